import { join } from 'node:path';
import { ciHome } from '../engine/kernel/home.js';

/** Default state location for a cluster: `$CI_HOME/clusters/<name>/state.json`. */
export function statePathFor(clusterName: string, home: string = ciHome()): string {
  return join(home, 'clusters', clusterName, 'state.json');
}

export function lockPathFor(statePath: string): string {
  return `${statePath}.lock`;
}

export function backupPathFor(statePath: string): string {
  return `${statePath}.backup`;
}

import { ClusterfileError, formatLocation, type Location } from '../kernel/errors.js';

export interface ClusterfileIssue {
  location: Location;
  /** Dot path of the offending field, e.g. `spec.hosts[0].ips[1]`. */
  path: string;
  message: string;
  /** The semantic rule that failed (`duplicate-ip`, `no-master`...), or `yaml`/`schema` for earlier stages. */
  rule: string;
}

export function formatIssue(i: ClusterfileIssue): string {
  return `${formatLocation(i.location)}: ${i.path}: ${i.message}`;
}

/** Every problem found in one Clusterfile, reported together; located at the first. */
export class ClusterfileInvalidError extends ClusterfileError {
  readonly issues: ClusterfileIssue[];
  constructor(issues: ClusterfileIssue[]) {
    const [first, ...rest] = issues;
    const more = rest.length ? '\n' + rest.map(formatIssue).join('\n') : '';
    super(
      first.location,
      `${first.path}: ${first.message}${more}`,
      issues.length > 1 ? `fix the ${issues.length} problems above and run again` : undefined,
    );
    this.issues = issues;
  }
}

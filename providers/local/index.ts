export { LocalLab, type LabHost, type HostKind } from './lab.js';
export { LocalHostError, requireRoot } from './errors.js';
export { ensureRootfs, rootfsCacheDir } from './rootfs.js';

export { loadClusterfile, parseClusterfile, clusterDigest } from './parse.js';
export { ClusterfileInvalidError, formatIssue, type ClusterfileIssue } from './errors.js';
export { clusterfileJsonSchema } from './schema.js';
export * from './types.js';

#!/usr/bin/env node
import { main, reportError } from './main.js';
import { redactStandardStreams } from './output.js';

redactStandardStreams();
const debug = process.argv.includes('--debug');
// Node would print these itself, past the redaction: report them the way every other error is reported.
process.on('uncaughtException', (err) => process.exit(reportError(err, debug)));
process.on('unhandledRejection', (err) => process.exit(reportError(err, debug)));

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => process.exit(reportError(err, debug)),
);

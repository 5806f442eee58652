/**
 * The exit codes of `ci`, one table for every command (the README lists them). 2 is reserved for
 * `ci plan --detailed-exitcode` so that scripts can tell "there are changes" from any failure.
 */
export const EXIT = {
  ok: 0,
  error: 1,
  changes: 2,
  /** EX_USAGE of sysexits.h: the command line itself is wrong (unknown command or flag, bad value). */
  usage: 64,
  /** EX_SOFTWARE: a bug in cloudimage. */
  internal: 70,
  /** 128 + SIGINT: an apply or destroy stopped by Ctrl-C; the state records what finished. */
  interrupted: 130,
} as const;

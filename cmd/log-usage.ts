// The help text of `stratakv log`, apart from cmd/log-verb.ts so that the usage of every verb
// can be printed without loading the log stream's client and decoders.

/** LOG_USAGE describes `stratakv log` for the help text. */
export const LOG_USAGE = `  log --from-index N [--follow] [--to-index N] [-w simple|json]
                                       the committed Raft log from index N, one line per
                                       entry (a compacted N starts with its snapshot);
                                       "stratakv log --help" for every flag`;

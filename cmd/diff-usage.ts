// The help text of `stratakv diff`, apart from cmd/diff-verb.ts so that the usage of every verb
// can be printed without loading the diff's client.

/** DIFF_USAGE describes `stratakv diff` for the help text. */
export const DIFF_USAGE = `  diff --endpoints A --against B [--prefix P] [-w simple|json]
                                       the keys that differ between two members (replicas
                                       of one cluster, or two clusters): missing (on A, not
                                       on B), extra (on B only), different; exit 0 equal,
                                       1 different, 2 error; "stratakv diff --help" for more`;

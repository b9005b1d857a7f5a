// The help text of `stratakv snapshot`, apart from the verbs themselves so that main.ts can
// print it without loading the snapshot format and the storage (snapshot-verbs.ts).

/**
 * SNAPSHOT_IDLE_TIMEOUT_DEFAULT is how long `snapshot save` waits for each message when
 * --command-timeout is not given: the member may write the snapshot before it sends anything,
 * and a whole transfer has no deadline (etcdctl 3.5 dropped it too), only this wait.
 */
export const SNAPSHOT_IDLE_TIMEOUT_DEFAULT = '30s';

/** SNAPSHOT_USAGE describes the snapshot verbs for the help text. */
export const SNAPSHOT_USAGE = `  snapshot save FILE [--endpoints HOST:PORT] [-w simple|json]
                                       stream a member's snapshot into FILE (exactly one endpoint)
  snapshot status FILE [-w table|json|simple]
                                       check FILE (every block and the SHA-256) and print what it holds
  snapshot restore FILE [--data-dir DIR] [--name NAME] [--initial-cluster NAME=URL,...]
                   [--initial-advertise-peer-urls URL] [--initial-cluster-token TOKEN] [-w simple|json]
                                       make DIR (absent or empty) a member of a NEW cluster holding FILE's
                                       keys; restore every member from the same FILE, then start each with
                                       \`stratakv serve\` and the same flags (serve's defaults apply)
  snapshot save waits ${SNAPSHOT_IDLE_TIMEOUT_DEFAULT} for each message unless --command-timeout says otherwise.`;

// probeJoiner: asks a new member's peer URL whether it waits to be added (admin.proto's
// Join.Waiting, served by `stratakv serve --join` until the member is added). Any failure is
// an answer too — "not waiting", with the reason — since a plan reports it rather than fails.

import { AdminCalls } from './admin-calls.ts';
import { normalizeEndpoint } from './endpoint-picker.ts';

/** JOIN_PROBE_TIMEOUT_MS bounds one probe. */
export const JOIN_PROBE_TIMEOUT_MS = 3_000;

/** JoinWaiting is what a waiting member says of itself, or why nothing answered. */
export type JoinWaiting =
  | { readonly waiting: true; readonly name: string; readonly zone: string; readonly peerUrls: readonly string[]; readonly clientUrls: readonly string[] }
  | { readonly waiting: false; readonly reason: string };

/** probeJoiner asks `peerUrl` (http://host:port) once, within JOIN_PROBE_TIMEOUT_MS. */
export async function probeJoiner(peerUrl: string, timeoutMs: number = JOIN_PROBE_TIMEOUT_MS): Promise<JoinWaiting> {
  let endpoint: string;
  try {
    endpoint = normalizeEndpoint(peerUrl);
  } catch (error) {
    return { waiting: false, reason: error instanceof Error ? error.message : String(error) };
  }
  const calls = new AdminCalls(['Waiting'], 'stratakv.admin.Join');
  try {
    const answer = await calls.call<{ name: string; zone: string; peer_urls: string[]; client_urls: string[] }>(endpoint, 'Waiting', {}, timeoutMs);
    return { waiting: true, name: answer.name, zone: answer.zone, peerUrls: answer.peer_urls, clientUrls: answer.client_urls };
  } catch (error) {
    return { waiting: false, reason: error instanceof Error ? error.message : String(error) };
  } finally {
    calls.close();
  }
}

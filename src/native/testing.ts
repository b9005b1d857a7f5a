// testing.ts — hooks for tests only, kept out of src/native/index.ts so production code
// cannot reach them by accident.
import { nativeAddon } from './addon.ts';

/**
 * setExternalBuffersAllowedForTesting makes the addon behave as under a V8 sandbox (false):
 * aligned buffers and mappings become ordinary copies. Tests restore it with true.
 */
export function setExternalBuffersAllowedForTesting(allowed: boolean): void {
  nativeAddon().setExternalBuffersAllowed(allowed);
}

export { NATIVE_ADDON_PATH } from './addon.ts';

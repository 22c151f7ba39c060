/**
 * Loaded before every test file (vitest `setupFiles`): registers the built-in devices, as the
 * package entry does, for test files that import src/ao or single device files directly.
 */
import '../../src/devices';

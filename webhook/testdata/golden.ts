// Golden files under test/golden/: compared byte for byte, rewritten when WEFT_UPDATE_GOLDEN=1
// (as linkerd's `go test ./... -update`). Review the diff of a refresh like code.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'golden');

/** Compares `value` with the golden file: a string as it is (rendered output), else as JSON. */
export function assertGolden(file: string, value: unknown): void {
  const path = join(GOLDEN_DIR, file);
  const text = typeof value === 'string' ? value : `${JSON.stringify(value, null, 2)}\n`;
  if (process.env.WEFT_UPDATE_GOLDEN === '1') {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    return;
  }
  assert.ok(existsSync(path), `golden file ${path} is missing: run the test with WEFT_UPDATE_GOLDEN=1`);
  assert.equal(
    text,
    readFileSync(path, 'utf8'),
    `${file} differs from the golden file (WEFT_UPDATE_GOLDEN=1 refreshes it)`,
  );
}

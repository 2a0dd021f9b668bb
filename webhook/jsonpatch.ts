// RFC 6902 JSON Patch: the operations the injector emits, and a small applier (add, remove,
// replace, test) used by the unit tests, the golden tests and weftctl's offline inject.

export type JsonPatchOp =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** Escapes one reference token of a JSON Pointer (RFC 6901): "~" → "~0", "/" → "~1". */
export function escapePointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

function unescapePointer(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** Applies a patch to a deep copy of doc and returns the copy; throws on a bad path. */
export function applyPatch<T>(doc: T, ops: readonly JsonPatchOp[]): T {
  const root = { v: structuredClone(doc) as unknown };
  for (const op of ops) {
    const tokens = op.path === '' ? [] : op.path.split('/').slice(1).map(unescapePointer);
    let parent: unknown = root;
    let key: string = 'v';
    for (const t of tokens) {
      parent = (parent as Record<string, unknown>)[key];
      key = t;
      if (parent === null || typeof parent !== 'object')
        throw new Error(`JSON Patch: no parent at ${op.path}`);
    }
    if (Array.isArray(parent)) {
      const index = key === '-' ? parent.length : Number(key);
      if (!Number.isInteger(index) || index < 0 || index > parent.length)
        throw new Error(`JSON Patch: bad index in ${op.path}`);
      if (op.op === 'add') parent.splice(index, 0, structuredClone(op.value));
      else if (op.op === 'remove') parent.splice(index, 1);
      else if (op.op === 'replace') parent[index] = structuredClone(op.value);
      else if (JSON.stringify(parent[index]) !== JSON.stringify(op.value))
        throw new Error(`JSON Patch: test failed at ${op.path}`);
    } else {
      const obj = parent as Record<string, unknown>;
      if ((op.op === 'replace' || op.op === 'remove') && !(key in obj))
        throw new Error(`JSON Patch: nothing at ${op.path}`);
      if (op.op === 'add' || op.op === 'replace') obj[key] = structuredClone(op.value);
      else if (op.op === 'remove') delete obj[key];
      else if (JSON.stringify(obj[key]) !== JSON.stringify(op.value))
        throw new Error(`JSON Patch: test failed at ${op.path}`);
    }
  }
  return root.v as T;
}

// Field errors from ajv's error objects: the dotted field path and a message that says what to
// change. Shared by the run-time validators (api/validate.ts) and the precompiled ones the proxy
// uses (api/generated/validators.js), so both speak the same way; this module does not load ajv.
import type { ErrorObject } from 'ajv';
import { CodedError } from './errors.ts';

export interface FieldError {
  /** Dotted path of the field, e.g. spec.backends[0].weight */
  field: string;
  message: string;
}

export class ValidationError extends CodedError<'WEFT_INVALID'> {
  readonly what: string;
  readonly errors: FieldError[];
  constructor(what: string, errors: FieldError[]) {
    super('WEFT_INVALID', `${what} is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`);
    this.what = what;
    this.errors = errors;
  }
}

function fieldOf(root: string, e: ErrorObject): string {
  let path = root;
  for (const part of e.instancePath.split('/').slice(1)) {
    const seg = part.replace(/~1/g, '/').replace(/~0/g, '~');
    path += /^\d+$/.test(seg) ? `[${seg}]` : path ? `.${seg}` : seg;
  }
  if (e.keyword === 'required')
    path += `${path ? '.' : ''}${(e.params as { missingProperty: string }).missingProperty}`;
  return path || '(root)';
}

function messageOf(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return 'is required';
    case 'enum':
      return `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `must be ${JSON.stringify(p.allowedValue)}`;
    case 'pattern':
      return `must match ${String(p.pattern)}`;
    default:
      return e.message ?? e.keyword;
  }
}

/** Collapses ajv's anyOf noise (one error per literal) into one enum-like error per field. */
export function simplify(root: string, errors: ErrorObject[]): FieldError[] {
  const out = new Map<string, FieldError>();
  const constsByPath = new Map<string, unknown[]>();
  for (const e of errors) {
    if (e.keyword === 'const') {
      const list = constsByPath.get(e.instancePath) ?? [];
      list.push((e.params as { allowedValue: unknown }).allowedValue);
      constsByPath.set(e.instancePath, list);
    }
  }
  for (const e of errors) {
    const field = fieldOf(root, e);
    if (e.keyword === 'anyOf' || e.keyword === 'const') {
      const allowed = constsByPath.get(e.instancePath);
      if (allowed && allowed.length > 0) {
        out.set(field, {
          field,
          message: `must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`,
        });
        continue;
      }
      if (e.keyword === 'anyOf') continue;
    }
    if (!out.has(field)) out.set(field, { field, message: messageOf(e) });
  }
  return [...out.values()];
}

/** A precompiled ajv validator (api/generated/validators.js): a predicate that keeps its errors. */
export interface CompiledValidator {
  (value: unknown): boolean;
  errors?: ErrorObject[] | null;
}

/** Runs a precompiled validator; the field errors, empty when valid. */
export function checkCompiled(validate: CompiledValidator, value: unknown, root = ''): FieldError[] {
  if (validate(value)) return [];
  return simplify(root, validate.errors ?? []);
}

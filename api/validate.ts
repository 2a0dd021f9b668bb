// Run-time validation against the API schemas with ajv. Errors name the field and say what
// to change, because they reach users through the webhook, the proxy's logs and weftctl.
import type { TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { CodedError } from './errors.ts';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

const ajv = addFormats(new Ajv({ strict: false, allErrors: true }));
const cache = new WeakMap<object, ValidateFunction>();

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
function simplify(root: string, errors: ErrorObject[]): FieldError[] {
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

/** Compiles (once) and runs a validator; returns the field errors, empty when valid. */
export function check(schema: TSchema, value: unknown, root = ''): FieldError[] {
  let validate = cache.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    cache.set(schema, validate);
  }
  if (validate(value)) return [];
  return simplify(root, validate.errors ?? []);
}

/** Like check, but throws a ValidationError naming every bad field. */
export function assertValid<T>(schema: TSchema, value: unknown, what: string, root = ''): T {
  const errors = check(schema, value, root);
  if (errors.length > 0) throw new ValidationError(what, errors);
  return value as T;
}

// Run-time validation against the API schemas with ajv. Errors name the field and say what
// to change, because they reach users through the webhook, the proxy's logs and weftctl.
import type { TSchema } from '@sinclair/typebox';
import { Ajv, type SchemaValidateFunction, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { durationMs } from './common.ts';
import { type FieldError, simplify, ValidationError } from './fielderrors.ts';

export { type FieldError, ValidationError };

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

const ajv = addFormats(new Ajv({ strict: false, allErrors: true }));
// The upper bound of a Duration (api/common.ts); the apiserver checks it with a CEL rule.
const maxDuration: SchemaValidateFunction = (max: string, data: string) => {
  if (durationMs(data) <= durationMs(max)) return true;
  maxDuration.errors = [{ keyword: 'maxDuration', message: `must be at most ${max}`, params: { max } }];
  return false;
};
ajv.addKeyword({ keyword: 'maxDuration', type: 'string', schemaType: 'string', validate: maxDuration });
const cache = new WeakMap<object, ValidateFunction>();

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

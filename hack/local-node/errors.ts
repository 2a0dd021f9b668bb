// One error class for the local node, with stable codes; callers match on `code`, never on text.
export type LocalNodeErrorCode =
  | 'WEFT_LN_NOT_ROOT'
  | 'WEFT_LN_TOOL_MISSING'
  | 'WEFT_LN_CIDR'
  | 'WEFT_LN_CIDR_IN_USE'
  | 'WEFT_LN_IP_EXHAUSTED'
  | 'WEFT_LN_COMMAND'
  | 'WEFT_LN_NO_COMMAND'
  | 'WEFT_LN_VOLUME'
  | 'WEFT_LN_ENV'
  | 'WEFT_LN_STOPPED';

export class LocalNodeError extends Error {
  readonly code: LocalNodeErrorCode;
  constructor(code: LocalNodeErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LocalNodeError';
    this.code = code;
  }
}

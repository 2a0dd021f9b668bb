// One error class for the local node, with stable codes; callers match on `code`, never on text.
import { CodedError } from '../../api/errors.ts';
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

export class LocalNodeError extends CodedError<LocalNodeErrorCode> {}

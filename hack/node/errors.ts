// One error class for the real node (hack/node), with stable codes; callers match on `code`.
import { CodedError } from '../../api/errors.ts';

export type NodeErrorCode =
  | 'WEFT_NODE_NOT_ROOT'
  | 'WEFT_NODE_TOOL_MISSING'
  | 'WEFT_NODE_SETTING'
  | 'WEFT_NODE_IN_USE'
  | 'WEFT_NODE_PAUSE_SOURCE'
  | 'WEFT_NODE_BUSYBOX'
  | 'WEFT_NODE_TIMEOUT'
  | 'WEFT_NODE_EXITED';

export class NodeError extends CodedError<NodeErrorCode> {}

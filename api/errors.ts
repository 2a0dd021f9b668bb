// The one base of every Weft error: a stable `code` that callers match on (never the message
// text), and the error that caused it. Each component declares its codes and a subclass
// (WeftError in kube/, WebhookError, ProxyError, LocalNodeError, …); the subclass's name is
// the error's name.
export class CodedError<Code extends string = string> extends Error {
  readonly code: Code;
  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

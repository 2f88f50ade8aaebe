// Server-sent events, parsed by hand: EventSource cannot send an Authorization header, so
// the log stream is read with fetch() and fed through this parser chunk by chunk.
// It follows the HTML standard's rules: lines end in CRLF, LF or CR (a CRLF split across
// two chunks counts once), a blank line dispatches, ':' starts a comment, one space after
// the colon is dropped, several data lines join with '\n', and the last id is remembered.

export class SseParser {
  /** @param {(event: {type: string, data: string, id: string|null}) => void} onEvent */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = '';
    this.type = '';
    this.data = [];
    this.lastEventId = null;
    this.retry = null;
    this.afterCr = false;
  }

  push(text) {
    if (text === '') return;
    // A CR that ended the previous chunk may be the first half of a CRLF.
    if (this.afterCr && text.startsWith('\n')) text = text.slice(1);
    this.afterCr = text.endsWith('\r');
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'event') this.type = value;
    else if (name === 'data') this.data.push(value);
    else if (name === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (name === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    const type = this.type || 'message';
    const data = this.data;
    this.type = '';
    this.data = [];
    if (data.length === 0) return;
    this.onEvent({ type, data: data.join('\n'), id: this.lastEventId });
  }
}

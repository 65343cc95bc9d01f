// Parsing a text/event-stream incrementally (the WHATWG "event stream interpretation"):
// chunks may split lines anywhere; a blank line ends a message; `data:` lines join with
// "\n"; lines starting with ":" are comments. Pure: no I/O.

export class SseParser {
  constructor() {
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.message = { id: null, event: "message", data: [] };
  }

  // The complete messages `chunk` finishes, oldest first.
  push(chunk) {
    this.buffer += chunk;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    const done = [];
    for (const line of lines) {
      if (line === "") {
        if (this.message.data.length > 0) {
          done.push({ ...this.message, data: this.message.data.join("\n") });
        }
        this.reset();
      } else if (!line.startsWith(":")) {
        this.field(line);
      }
    }
    return done;
  }

  field(line) {
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let content = colon === -1 ? "" : line.slice(colon + 1);
    if (content.startsWith(" ")) content = content.slice(1);
    if (name === "data") this.message.data.push(content);
    else if (name === "event") this.message.event = content;
    else if (name === "id") this.message.id = content;
  }
}

/**
 * A job's websocket stream (/v1/jobs/ID/stream, authenticated by the session cookie) with resume:
 * after a dropped connection it reconnects with ?after=<last event id>, backing off
 * min(10 s, 0.5 s * 2^retries), and ignores any event it has already applied, so each event id
 * reaches onEvent at most once. onStatus gets "live", "reconnecting" or "ended" (after a terminal state).
 */

import { TERMINAL } from "./job_status.js";

export class JobStream {
  constructor(jobId, onEvent, onStatus) {
    Object.assign(this, { jobId, onEvent, onStatus, lastId: 0, ended: false, closed: false, retries: 0, reconnects: 0 });
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/v1/jobs/${encodeURIComponent(this.jobId)}/stream?after=${this.lastId}`);
    this.socket = socket;
    socket.onopen = () => { this.retries = 0; this.onStatus("live"); };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.id <= this.lastId) return;  // already applied (a replay after reconnecting)
      this.lastId = event.id;
      if (event.type === "state" && TERMINAL.has(event.data.state)) this.ended = true;
      this.onEvent(event);
    };
    socket.onclose = () => {
      if (this.socket !== socket || this.closed) return;
      if (this.ended) { this.onStatus("ended"); return; }
      const delay = Math.min(10000, 500 * 2 ** this.retries++);
      this.reconnects += 1;
      this.onStatus("reconnecting");
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Drops the connection as a network failure would (for tests and the curious). */
  drop() { if (this.socket) this.socket.close(4000, "dropped"); }

  close() { this.closed = true; clearTimeout(this.timer); if (this.socket) this.socket.close(1000); }
}

// A viewer whose avatars come from the room's SFU (Janus VideoRoom; docs/architecture.md): the
// receiver's room API says where the room's media lives (GET /api/rooms/R/media), and this
// subscribes to the room's signed feeds with the Janus JavaScript library (served by the
// receiver from dist/janus/, no CDN), one multistream subscription with a seat per feed. It
// asks the receiver again every second: when the feeds change it subscribes again; when Janus
// goes away (a restart) it tells the session, which reconnects.
import Janus from "./janus/janus.es.js";

const FOLLOW_MS = 1000;
let janusReady = null; // Janus.init runs once per page

function initJanus() {
  janusReady ??= new Promise((resolve) => {
    Janus.init({
      debug: false,
      dependencies: Janus.useDefaultDependencies({ adapter: window.adapter }),
      callback: resolve,
    });
  });
  return janusReady;
}

export class SfuViewer {
  // media: the receiver's {url, room, pin, token, feeds}; seats: what the page shows;
  // onTrack(seat, track, receiver); onFeeds(feeds); onLost(reason): the session reconnects.
  constructor({ media, seats, fetchMedia, onTrack, onFeeds, onLost }) {
    this.media = media;
    this.seats = seats;
    this.fetchMedia = fetchMedia;
    this.onTrack = onTrack;
    this.onFeeds = onFeeds;
    this.onLost = onLost;
    this.janus = null;
    this.handle = null;
    this.feeds = [];
    this.seatOfMid = new Map();
    this.followTimer = null;
    this.connected = false; // the Janus session exists
    this.following = false;
    this.closed = false;
  }

  get pc() {
    return this.handle?.webrtcStuff?.pc ?? null;
  }

  async start() {
    await initJanus();
    await new Promise((resolve, reject) => {
      this.janus = new Janus({
        server: this.media.url,
        token: this.media.token,
        success: () => {
          this.connected = true;
          resolve();
        },
        error: (cause) => {
          // before the session exists: start() fails (the caller retries); later: lost
          if (!this.connected) reject(new Error(`The SFU is unreachable: ${cause}`));
          else this.lost(`The SFU connection was lost (${cause})`);
        },
      });
    });
    await this.subscribe(this.media.feeds);
    this.followTimer = setInterval(() => this.follow(), FOLLOW_MS);
  }

  subscribe(feeds) {
    this.feeds = feeds.slice(0, this.seats);
    this.onFeeds(this.feeds);
    if (!this.feeds.length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.janus.attach({
        plugin: "janus.plugin.videoroom",
        success: (handle) => {
          this.handle = handle;
          handle.send({
            message: {
              request: "join",
              ptype: "subscriber",
              room: this.media.room,
              pin: this.media.pin,
              streams: this.feeds.map((feed) => ({ feed: feed.feed })),
            },
          });
        },
        error: (cause) => reject(new Error(`The SFU refused the subscription: ${cause}`)),
        onmessage: (message, jsep) => {
          if (message.error) {
            reject(new Error(`The SFU refused the subscription: ${message.error}`));
            return;
          }
          for (const stream of message.streams ?? []) {
            const seat = this.feeds.findIndex((feed) => feed.feed === stream.feed_id);
            if (seat >= 0) this.seatOfMid.set(String(stream.mid), seat);
          }
          if (!jsep) return;
          this.handle.createAnswer({
            jsep,
            tracks: [{ type: "data" }],
            success: (answer) => {
              this.handle.send({ message: { request: "start", room: this.media.room }, jsep: answer });
              resolve();
            },
            error: (cause) => reject(new Error(`Cannot answer the SFU: ${cause?.message ?? cause}`)),
          });
        },
        onremotetrack: (track, mid, on) => {
          if (!on || track.kind !== "video") return;
          const seat = this.seatOfMid.get(String(mid));
          const receiver = this.pc?.getReceivers().find((r) => r.track === track) ?? null;
          if (seat !== undefined) this.onTrack(seat, track, receiver);
        },
        iceState: (state) => {
          if (state === "failed") this.lost("The connection to the SFU failed");
        },
        oncleanup: () => {},
      });
    });
  }

  async follow() {
    if (this.closed || this.following) return; // one check at a time (a slow answer)
    this.following = true;
    try {
      let media;
      try {
        media = await this.fetchMedia();
      } catch {
        return; // the receiver itself is reconnecting to the SFU: ask again
      }
      if (this.closed) return;
      // a feed published again (after a Janus restart or a failure) has a new generation
      const key = (feed) => `${feed.feed}:${feed.generation}`;
      const wanted = (media.feeds ?? []).slice(0, this.seats).map(key);
      if (wanted.join() === this.feeds.map(key).join()) return;
      this.detachHandle();
      this.seatOfMid.clear();
      this.media = media;
      try {
        await this.subscribe(media.feeds);
      } catch (error) {
        this.lost(error.message);
      }
    } finally {
      this.following = false;
    }
  }

  lost(reason) {
    if (this.closed) return;
    this.close();
    this.onLost(reason);
  }

  detachHandle() {
    if (this.handle) {
      try {
        this.handle.detach();
      } catch {
        // the session is already gone
      }
    }
    this.handle = null;
  }

  close() {
    this.closed = true;
    clearInterval(this.followTimer);
    this.detachHandle();
    if (this.janus) {
      try {
        this.janus.destroy({ cleanupHandles: true });
      } catch {
        // already destroyed
      }
    }
    this.janus = null;
  }
}

// The avatar videos: one seat per video track the server sends, captioned from its `seats`
// ctrl messages.
import { $, status } from "./ui.js";

export function buildSeats(count) {
  const container = $("seats");
  container.querySelectorAll(".seat").forEach((el) => el.remove());
  status.seats = [];
  for (let i = 0; i < count; i++) {
    const node = $("seat-template").content.firstElementChild.cloneNode(true);
    node.dataset.seat = String(i);
    node.hidden = true;
    container.append(node);
    status.seats.push({ element: node, video: node.querySelector("video"), participant: null });
  }
}

export function showSeats(seats) {
  // seats: [{seat, participant, avatar}] from the server's `seats` ctrl message.
  for (const seat of status.seats) seat.participant = null;
  let guests = 0;
  for (const entry of seats ?? []) {
    const seat = status.seats[entry.seat];
    if (!seat) continue;
    seat.participant = entry.participant;
    const own = entry.participant != null && entry.participant === status.participant;
    seat.element.classList.toggle("own", own);
    // people, not ids: "you" (a sender's own avatar comes first), else "guest N" in the order
    // the room's other senders joined
    seat.element.querySelector("figcaption").textContent = own
      ? `you · ${entry.avatar ?? "avatar"}`
      : `guest ${++guests} · ${entry.avatar ?? "avatar"}`;
  }
  let shown = 0;
  for (const seat of status.seats) {
    seat.element.hidden = !seat.participant;
    if (seat.participant) shown++;
  }
  $("empty").hidden = shown > 0;
  $("empty").textContent = "Nobody is sending in this room yet. Waiting for someone to join…";
}

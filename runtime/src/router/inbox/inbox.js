// The inbox: signs an agent in, lists the company's conversations by state, shows one, and
// answers, takes over, gives back and closes through the conversations API. It refreshes every
// few seconds, so new messages and delivery statuses appear without a reload. Text from the
// server is only ever set as textContent.
"use strict";

const REFRESH_MS = 3000;
let session = null;
let shown = "handed_off";
let current = null;
let timer = null;

const $ = (id) => document.getElementById(id);

function notice(text) {
  $("notice").textContent = text || "";
}

function base() {
  return `/companies/${encodeURIComponent(session.company_id)}/projects/${encodeURIComponent(session.project_id)}/conversations`;
}

async function call(method, path, body) {
  const headers = { "x-csrf-token": session ? session.csrf_token : "" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (response.status === 401) signedOut("Your session ended; sign in again.");
  if (!response.ok) throw new Error(answer.message || `The request failed (${response.status})`);
  return answer;
}

function signedIn(answer) {
  session = answer;
  $("agent").textContent = `Signed in as ${answer.agent}`;
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("desk").hidden = false;
  notice("");
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

function signedOut(text) {
  session = null;
  current = null;
  clearInterval(timer);
  $("who").hidden = true;
  $("desk").hidden = true;
  $("sign-in").hidden = false;
  notice(text);
}

async function refresh() {
  if (!session) return;
  try {
    const list = await call("GET", `${base()}?state=${shown}`);
    showList(list.conversations);
    if (current) showConversation((await call("GET", `${base()}/${current}`)).conversation);
  } catch (error) {
    notice(error.message);
  }
}

function showList(conversations) {
  const list = $("conversations");
  list.replaceChildren();
  $("empty").hidden = conversations.length > 0;
  for (const c of conversations) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.id = c.id;
    button.setAttribute("aria-current", String(c.id === current));
    const name = c.recipient_name || c.recipient;
    const last = c.last_message ? `: ${c.last_message.content}` : "";
    button.textContent = `${name} (${c.channel})${last}`;
    button.addEventListener("click", () => { current = c.id; refresh(); });
    item.append(button);
    list.append(item);
  }
}

function describe(c) {
  const states = {
    handed_off: "Handed off: nobody has taken it yet",
    waiting_for_person: `Waiting for ${c.taken_over_by || "a person"} to answer`,
    open: c.taken_over_by ? `With ${c.taken_over_by}` : "The AI is answering",
    closed: "Closed",
  };
  const why = c.hand_off_reason ? ` (${c.hand_off_reason})` : "";
  return states[c.state] + why;
}

function showConversation(c) {
  $("conversation").hidden = false;
  $("conversation-title").textContent = `${c.recipient_name || c.recipient} on ${c.channel}`;
  $("conversation-state").textContent = describe(c);
  const messages = $("messages");
  messages.replaceChildren();
  for (const m of c.messages) {
    const item = document.createElement("li");
    item.className = m.role;
    const who = { user: "Candidate", assistant: "AI", human: m.agent || "A person" }[m.role] || m.role;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = [who, m.timestamp, m.delivery_status].filter(Boolean).join(" · ");
    const text = document.createElement("span");
    text.textContent = m.content;
    item.append(meta, text);
    messages.append(item);
  }
  const closed = c.state === "closed";
  $("take-over").disabled = closed || Boolean(c.taken_over_by);
  $("give-back").disabled = closed || (c.state === "open" && !c.taken_over_by);
  $("close").disabled = closed;
  $("send").disabled = closed;
}

async function act(action) {
  try {
    await call("POST", `${base()}/${current}/${action}`);
    notice("");
    await refresh();
  } catch (error) {
    notice(error.message);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      signedIn(await call("POST", "/inbox/session", {
        company_id: $("company-id").value, project_id: $("project-id").value, token: $("token").value,
      }));
      $("token").value = "";
    } catch (error) {
      notice(error.message);
    }
  });
  $("sign-out").addEventListener("click", async () => {
    await call("DELETE", "/inbox/session").catch(() => {});
    signedOut("Signed out.");
  });
  for (const button of document.querySelectorAll(".filter")) {
    button.addEventListener("click", () => {
      shown = button.dataset.state;
      for (const b of document.querySelectorAll(".filter")) b.setAttribute("aria-pressed", String(b === button));
      refresh();
    });
  }
  $("take-over").addEventListener("click", () => act("take-over"));
  $("give-back").addEventListener("click", () => act("give-back"));
  $("close").addEventListener("click", () => act("close"));
  $("reply").addEventListener("submit", async (event) => {
    event.preventDefault();
    const send = $("send");
    send.disabled = true;
    try {
      await call("POST", `${base()}/${current}/messages`, { text: $("reply-text").value });
      $("reply-text").value = "";
      notice("Sent.");
      await refresh();
    } catch (error) {
      notice(error.message);
    } finally {
      send.disabled = false;
    }
  });
  try {
    signedIn(await call("GET", "/inbox/session"));
  } catch (_) {
    signedOut("");
  }
});

// The review page's outbox: the decisions and undos a reviewer made that the server has not
// stored yet. Entries are sent one at a time, oldest first; each gets a client id when it is
// added, so a send repeated after a lost answer is stored once. A send that fails for a reason
// that may pass (no network, a timeout, 429, 5xx) is retried with backoff; any other failure
// drops the entry through `refused`. The entries are kept in localStorage under `storageKey`,
// so that a reload resumes them (`restore`).
//
//   const outbox = Outbox.create({ storageKey, send, changed, refused });
//   send(entry)            async; stores the entry on the server; for a "decide" entry it
//                          resolves to the stored decision, whose id the undos queued after it
//                          then carry (`entry.decisionId`)
//   changed(entry?)        the entries changed: one was added or withdrawn (no argument), or
//                          `entry` failed for now or was settled
//   refused(entry, error)  the server refused the entry; it leaves the outbox
//   outbox.add(entry)      queue {kind: "decide"|"undo", sampleIndex, sampleId, ...}; returns it
//                          with its clientId
//   outbox.withdraw(clientId)   drop a decision never sent; false if it was sent (undo it then)
//   outbox.entries, outbox.pendingFor(sampleIndex), outbox.failing()
//   outbox.restore()       the entries saved by an earlier page, now queued again
//   outbox.pump()          send what is queued (also started by `add`)
"use strict";

const Outbox = (() => {
  const RETRY_BASE_MS = 400;
  const RETRY_MAX_MS = 8000;
  const SAVED_FIELDS = ["kind", "clientId", "sampleIndex", "sampleId", "verdict", "label", "given_label", "decisionId", "targetClientId"];

  const retriable = (error) => error.status === 0 || error.status === 408 || error.status === 429 || error.status >= 500;
  const newClientId = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`);
  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  function create({ storageKey, send, changed, refused }) {
    let entries = []; // oldest first
    let sending = null; // the entry being sent

    function save() {
      try {
        localStorage.setItem(storageKey, JSON.stringify(entries.map((entry) => Object.fromEntries(SAVED_FIELDS.map((field) => [field, entry[field]])))));
      } catch (_error) {
        // storage full or disabled: the outbox still lives in this page
      }
    }

    function add(entry) {
      const queued = { failures: 0, error: null, attempted: false, clientId: newClientId(), ...entry };
      entries.push(queued);
      save();
      changed();
      pump();
      return queued;
    }

    function withdraw(clientId) {
      const index = entries.findIndex((entry) => entry.kind === "decide" && entry.clientId === clientId);
      if (index < 0 || entries[index].attempted) return false;
      entries.splice(index, 1);
      save();
      changed();
      return true;
    }

    async function pump() {
      if (sending) return;
      while (entries.length) {
        const entry = entries[0];
        sending = entry;
        entry.attempted = true;
        try {
          const stored = await send(entry);
          if (entry.kind === "decide" && stored) {
            for (const later of entries) if (later.targetClientId === entry.clientId) later.decisionId = stored.id;
          }
        } catch (error) {
          if (retriable(error)) {
            entry.failures += 1;
            entry.error = error.message;
            changed(entry);
            await sleep(Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (entry.failures - 1)));
            continue;
          }
          refused(entry, error);
        }
        entries.shift();
        save();
        changed(entry);
      }
      sending = null;
    }

    function restore() {
      try {
        const saved = JSON.parse(localStorage.getItem(storageKey) || "[]");
        entries = saved.map((entry) => ({ failures: 0, error: null, attempted: true, ...entry }));
      } catch (_error) {
        entries = [];
      }
      return entries;
    }

    return {
      get entries() { return entries; },
      pendingFor: (sampleIndex) => entries.filter((entry) => entry.sampleIndex === sampleIndex).at(-1) || null,
      failing: () => entries.find((entry) => entry.failures) || null,
      add, withdraw, pump, restore,
    };
  }

  return { create };
})();

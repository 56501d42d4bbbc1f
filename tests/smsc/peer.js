'use strict';
// A scriptable SMSC for the SMPP adapter's integration tests, built on node-smpp.
//
// It listens on 127.0.0.1 (port from argv[2], 0 = any free port; with argv[3] and
// argv[4], the paths of a PEM key and certificate, over TLS) and prints one JSON
// object per line on stdout: first {"event":"listening","port":N}, then every PDU it
// receives ({"event":"pdu",...}), session events and the result of each command.
// Commands arrive as JSON lines on stdin; see `commands` below. The peer answers
// binds, enquire_link, unbind and submit_sm itself, with fault modes the test sets
// (bind failure, throttling, silence) so the unhappy paths can be driven on purpose.
const fs = require('fs');
const readline = require('readline');
const smpp = require('smpp');

const port = Number(process.argv[2] || 0);
const sessions = new Set();
const faults = {
  bind_status: 0, // non-zero: answer every bind with this command_status
  refuse_system_ids: [], // binds from these system_ids are answered ESME_RBINDFAIL
  submit_statuses: [], // statuses for the next submit_sm, consumed one per PDU
  silent_submit: false, // swallow submit_sm without any response
  silent_enquire_link: false, // swallow enquire_link without any response
  unbind_after_submits: 0, // after this many more submit_sm: send unbind, then drop
  drop_after_submits: 0, // after this many more submit_sm: destroy the socket
};
let message_counter = 0;
const vendor_tlvs = new Set();
let burst = null;
let mo_queue = null;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function hex(buffer) {
  return Buffer.isBuffer(buffer) ? buffer.toString('hex') : null;
}

// The raw short_message of a submit_sm/deliver_sm: node-smpp decodes it into text,
// but the tests assert on the exact octets we sent (UDH, escapes, surrogates).
function raw_short_message(raw) {
  let offset = 16;
  const skip_cstring = () => {
    while (raw[offset] !== 0) offset += 1;
    offset += 1;
  };
  skip_cstring(); // service_type
  offset += 2;
  skip_cstring(); // source_addr
  offset += 2;
  skip_cstring(); // destination_addr
  offset += 3; // esm_class, protocol_id, priority_flag
  skip_cstring(); // schedule_delivery_time
  skip_cstring(); // validity_period
  offset += 4; // registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id
  const length = raw[offset];
  return raw.slice(offset + 1, offset + 1 + length);
}

const original_from_buffer = smpp.PDU.prototype.fromBuffer;
smpp.PDU.prototype.fromBuffer = function (buffer) {
  this._raw = Buffer.from(buffer);
  return original_from_buffer.call(this, buffer);
};

function describe(pdu) {
  const out = {
    event: 'pdu',
    command: pdu.command,
    command_status: pdu.command_status,
    sequence_number: pdu.sequence_number,
  };
  for (const key of ['system_id', 'password', 'system_type', 'source_addr', 'source_addr_ton',
    'source_addr_npi', 'destination_addr', 'dest_addr_ton', 'dest_addr_npi', 'esm_class',
    'data_coding', 'registered_delivery', 'message_id']) {
    if (key in pdu) out[key] = pdu[key];
  }
  if ((pdu.command === 'submit_sm' || pdu.command === 'deliver_sm') && pdu._raw) {
    out.short_message_hex = hex(raw_short_message(pdu._raw));
    if (pdu.short_message && typeof pdu.short_message.message === 'string') {
      out.text = pdu.short_message.message;
    }
  }
  return out;
}

function bound_sessions(for_delivery) {
  const result = [];
  for (const session of sessions) {
    if (!session.bound) continue;
    if (for_delivery && session.bound === 'bind_transmitter') continue;
    result.push(session);
  }
  return result;
}

function on_submit(session, pdu) {
  if (mo_queue) {
    mo_queue.on_reply(pdu);
    message_counter += 1;
    session.send(pdu.response({ message_id: 'm' + message_counter }));
    return;
  }
  if (burst) {
    // A benchmark burst: answer at once, report only the summary (no line per PDU).
    burst.on_reply(pdu);
    message_counter += 1;
    session.send(pdu.response({ message_id: 'm' + message_counter }));
    return;
  }
  const entry = describe(pdu);
  entry.esme = session.system_id || null; // the bind it came on
  if (faults.silent_submit) {
    entry.answered = false;
    emit(entry);
    return;
  }
  const status = faults.submit_statuses.length ? faults.submit_statuses.shift() : 0;
  if (status) {
    entry.answered_status = status;
    emit(entry);
    session.send(pdu.response({ command_status: status }));
  } else {
    message_counter += 1;
    const message_id = 'm' + message_counter;
    entry.assigned_message_id = message_id;
    emit(entry);
    session.send(pdu.response({ message_id }));
  }
  if (faults.unbind_after_submits > 0) {
    faults.unbind_after_submits -= 1;
    if (faults.unbind_after_submits === 0) {
      session.unbind();
      setTimeout(() => session.destroy(), 200);
    }
  }
  if (faults.drop_after_submits > 0) {
    faults.drop_after_submits -= 1;
    if (faults.drop_after_submits === 0) session.destroy();
  }
}

function on_session(session) {
  sessions.add(session);
  session.bound = null;
  session.socket.setNoDelay(true); // as a production SMSC would: no Nagle delays

  emit({ event: 'connect', sessions: sessions.size });
  session.on('pdu', (pdu) => {
    if (pdu.command === 'submit_sm') return; // reported by on_submit with its answer
    if (mo_queue && pdu.command === 'deliver_sm_resp') return;
    if (!(burst && pdu.command === 'deliver_sm_resp' && !burst.report_resps)) {
      // `esme`: the system_id of the bind it came on (sequence numbers are per session).
      emit(Object.assign(describe(pdu), { esme: session.system_id || null }));
    }
  });
  for (const bind of ['bind_transceiver', 'bind_receiver', 'bind_transmitter']) {
    session.on(bind, (pdu) => {
      if (faults.bind_status) {
        session.send(pdu.response({ command_status: faults.bind_status }));
        return;
      }
      if (faults.refuse_system_ids.includes(pdu.system_id)) {
        session.send(pdu.response({ command_status: 0x0d }));
        return;
      }
      session.bound = bind;
      session.system_id = pdu.system_id; // lets a test deliver to one chosen ESME
      session.send(pdu.response({ system_id: 'peer' }));
      emit({ event: 'bound', mode: bind, system_id: pdu.system_id });
      if (mo_queue) setImmediate(() => mo_queue.pump());
    });
  }
  session.on('enquire_link', (pdu) => {
    if (!faults.silent_enquire_link) session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.bound = null;
    setTimeout(() => session.close(), 50);
  });
  session.on('submit_sm', (pdu) => on_submit(session, pdu));
  session.on('deliver_sm_resp', (pdu) => {
    if (mo_queue) mo_queue.on_resp(session, pdu);
    else if (burst) burst.on_resp(session, pdu);
  });
  session.on('error', (error) => emit({ event: 'session_error', error: String(error) }));
  session.on('close', () => {
    sessions.delete(session);
    if (mo_queue) mo_queue.on_close(session);
    emit({ event: 'close', sessions: sessions.size });
  });
}

function deliver(command, session) {
  const options = Object.assign({}, command.fields || {});
  // An MO as deliver_sm (the usual way) or as data_sm (no short_message field).
  const name = command.pdu || 'deliver_sm';
  if (command.short_message_hex !== undefined && name === 'deliver_sm') {
    options.short_message = Buffer.from(command.short_message_hex, 'hex');
  }
  if (command.message_payload_hex !== undefined) {
    options.message_payload = Buffer.from(command.message_payload_hex, 'hex');
  }
  for (const tlv of command.tlvs || []) {
    const tag = 'vendor_' + tlv.tag.toString(16);
    if (!vendor_tlvs.has(tag)) {
      smpp.addTLV(tag, { id: tlv.tag, type: smpp.types.tlv.buffer });
      vendor_tlvs.add(tag);
    }
    options[tag] = Buffer.from(tlv.hex, 'hex');
  }
  const pdu = new smpp.PDU(name, options);
  session.send(pdu);
  return pdu.sequence_number;
}

// Pushes `count` deliver_sm with at most `window` unanswered per session, optionally
// paced at `rate` per second, and measures the time from each deliver_sm to the
// submit_sm that answers it (matched by the subscriber number, one number per MO).
// `sessions`: one, or (`all_sessions`) every bound receiver in turn.
function start_burst(command, sessions) {
  const count = command.count;
  const window = command.window || 50;
  const rate = command.rate || 0;
  const prefix = command.source_prefix || '7916';
  const sent_at = new Map();
  const latencies = [];
  // deliver_sm -> deliver_sm_resp, by sequence number: how long the ESME holds an MO.
  const ack_sent_at = new Map(); // session -> Map(sequence -> time)
  for (const one of sessions) ack_sent_at.set(one, new Map());
  const ack_latencies = [];
  let sent = 0;
  const outstanding = new Map(sessions.map((one) => [one, 0]));
  let turn = 0;
  let acked = 0;
  let nacked = 0;
  let replies = 0;
  const started = process.hrtime.bigint();
  let last_reply = started;
  const state = {
    report_resps: false,
    on_resp(session, pdu) {
      if (!outstanding.has(session)) return;
      outstanding.set(session, outstanding.get(session) - 1);
      const at = ack_sent_at.get(session).get(pdu.sequence_number);
      if (at !== undefined) {
        ack_sent_at.get(session).delete(pdu.sequence_number);
        ack_latencies.push(Number(process.hrtime.bigint() - at) / 1e6);
      }
      if (pdu.command_status === 0) acked += 1;
      else nacked += 1;
      pump();
    },
    on_reply(pdu) {
      const at = sent_at.get(pdu.destination_addr);
      if (at === undefined) return;
      sent_at.delete(pdu.destination_addr);
      const now = process.hrtime.bigint();
      latencies.push(Number(now - at) / 1e6);
      last_reply = now;
      replies += 1;
      if (replies === count) finish();
    },
  };
  function number(i) {
    return prefix + String(i).padStart(11 - prefix.length, '0');
  }
  // The next session (in turn) with room in its window, or null.
  function next_session() {
    for (let k = 0; k < sessions.length; k += 1) {
      const session = sessions[(turn + k) % sessions.length];
      if (outstanding.get(session) < window) {
        turn = (turn + k + 1) % sessions.length;
        return session;
      }
    }
    return null;
  }
  function send_one(session) {
    const i = sent;
    sent += 1;
    outstanding.set(session, outstanding.get(session) + 1);
    const phone = number(i);
    const text = command.texts[i % command.texts.length];
    sent_at.set(phone, process.hrtime.bigint());
    const deliver = new smpp.PDU('deliver_sm', {
      source_addr: phone,
      source_addr_ton: 1,
      source_addr_npi: 1,
      destination_addr: command.destination_addr,
      data_coding: 0,
      short_message: Buffer.from(text, 'latin1'),
    });
    session.send(deliver);
    ack_sent_at.get(session).set(deliver.sequence_number, process.hrtime.bigint());
  }
  let timer = null;
  function pump() {
    if (rate) return;
    while (sent < count) {
      const session = next_session();
      if (!session) break;
      send_one(session);
    }
  }
  function finish() {
    if (timer) clearInterval(timer);
    const elapsed_ms = Number(last_reply - started) / 1e6;
    latencies.sort((a, b) => a - b);
    ack_latencies.sort((a, b) => a - b);
    const pick = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
    const pick_ack = (q) =>
      ack_latencies[Math.min(ack_latencies.length - 1, Math.floor(q * ack_latencies.length))];
    emit({
      event: 'burst_done', count, replies, acked, nacked, elapsed_ms,
      rate: replies / (elapsed_ms / 1000),
      p50_ms: pick(0.5), p99_ms: pick(0.99), max_ms: latencies[latencies.length - 1],
      ack_p50_ms: pick_ack(0.5), ack_p99_ms: pick_ack(0.99),
    });
    burst = null;
  }
  burst = state;
  if (rate) {
    // Paced: a 10 ms tick sends what is due, still never beyond the window.
    timer = setInterval(() => {
      const due = Math.floor((Number(process.hrtime.bigint() - started) / 1e9) * rate);
      while (sent < count && sent < due) {
        const session = next_session();
        if (!session) break;
        send_one(session);
      }
    }, 10);
  } else {
    pump();
  }
}


// Store and forward, as a real SMSC does: `count` MO wait in a queue and go to bound
// receivers (round robin), at most `window` unanswered per session. An MO leaves the
// queue only when a deliver_sm_resp says ESME_ROK; one unanswered when its session
// closes (the ESME died) or answered with an error goes back and is delivered again,
// with the same text and the same MO id TLV. Replies are counted per subscriber.
function start_queue(command) {
  const window = command.window || 50;
  const prefix = command.source_prefix || '7917';
  const tag = command.id_tlv || 0;
  const tag_name = 'vendor_' + tag.toString(16);
  if (tag && !vendor_tlvs.has(tag_name)) {
    smpp.addTLV(tag_name, { id: tag, type: smpp.types.tlv.buffer });
    vendor_tlvs.add(tag_name);
  }
  const waiting = [];
  for (let i = command.count - 1; i >= 0; i -= 1) waiting.push(i);
  const in_flight = new Map(); // session -> Map(sequence_number -> index)
  const acked = new Set();
  const replies = new Map(); // phone -> number of submit_sm
  let deliveries = 0;
  let redeliveries = 0;
  let done_emitted = false;
  const phone = (i) => prefix + String(i).padStart(11 - prefix.length, '0');
  const state = {
    pump() {
      const receivers = bound_sessions(true);
      let progress = true;
      while (waiting.length && progress) {
        progress = false;
        for (const session of receivers) {
          const flight = in_flight.get(session) || new Map();
          in_flight.set(session, flight);
          if (!waiting.length || flight.size >= window) continue;
          const i = waiting.pop();
          const options = {
            source_addr: phone(i),
            source_addr_ton: 1,
            source_addr_npi: 1,
            destination_addr: command.destination_addr,
            data_coding: 0,
            short_message: Buffer.from(command.texts[i % command.texts.length], 'latin1'),
          };
          if (tag) options[tag_name] = Buffer.from('mo-' + i, 'latin1');
          const pdu = new smpp.PDU('deliver_sm', options);
          session.send(pdu);
          flight.set(pdu.sequence_number, i);
          deliveries += 1;
          progress = true;
        }
      }
    },
    on_resp(session, pdu) {
      const flight = in_flight.get(session);
      if (!flight || !flight.has(pdu.sequence_number)) return;
      const i = flight.get(pdu.sequence_number);
      flight.delete(pdu.sequence_number);
      if (pdu.command_status === 0) acked.add(i);
      else {
        waiting.push(i);
        redeliveries += 1;
      }
      state.check();
      setImmediate(() => state.pump());
    },
    on_close(session) {
      const flight = in_flight.get(session);
      in_flight.delete(session);
      if (!flight) return;
      for (const i of flight.values()) {
        waiting.push(i);
        redeliveries += 1;
      }
    },
    on_reply(pdu) {
      const to = pdu.destination_addr;
      replies.set(to, (replies.get(to) || 0) + 1);
      state.check();
    },
    status() {
      let answered = 0;
      let extra = 0;
      let most = 0;
      const twice = []; // subscribers answered more than once
      for (let i = 0; i < command.count; i += 1) {
        const n = replies.get(phone(i)) || 0;
        if (n > 0) answered += 1;
        if (n > 1) {
          extra += n - 1;
          twice.push(phone(i));
        }
        if (n > most) most = n;
      }
      let outstanding = 0;
      for (const flight of in_flight.values()) outstanding += flight.size;
      return {
        count: command.count, acked: acked.size, waiting: waiting.length, outstanding,
        deliveries, redeliveries, answered, extra_replies: extra, most_replies: most, twice,
      };
    },
    check() {
      if (done_emitted || acked.size < command.count) return;
      const status = state.status();
      if (status.answered < command.count) return;
      done_emitted = true;
      emit(Object.assign({ event: 'queue_done' }, status));
    },
  };
  mo_queue = state;
  state.pump();
}

const commands = {
  // To the newest bound receiver, or with `system_id` to the newest one that bound
  // with that system_id (several ESMEs on one SMSC: which bind gets which MO).
  deliver_sm(command) {
    let targets = bound_sessions(true);
    if (command.system_id !== undefined) {
      targets = targets.filter((session) => session.system_id === command.system_id);
    }
    if (!targets.length) return { error: 'no bound receiver' };
    return { sequence_number: deliver(command, targets[targets.length - 1]) };
  },
  enquire_link() {
    const targets = bound_sessions(false);
    if (!targets.length) return { error: 'no bound session' };
    const pdu = new smpp.PDU('enquire_link');
    targets[targets.length - 1].send(pdu);
    return { sequence_number: pdu.sequence_number };
  },
  unbind() {
    const targets = bound_sessions(false);
    for (const session of targets) session.unbind();
    return { sessions: targets.length };
  },
  drop(command) {
    // Every session, or only the binds of one system_id (`system_id`).
    let count = 0;
    for (const session of sessions) {
      if (command.system_id && session.system_id !== command.system_id) continue;
      session.destroy();
      count += 1;
    }
    return { sessions: count };
  },
  set(command) {
    Object.assign(faults, command.faults || {});
    return { faults };
  },
  burst(command) {
    const targets = bound_sessions(true);
    if (!targets.length) return { error: 'no bound receiver' };
    start_burst(command, command.all_sessions ? targets : [targets[targets.length - 1]]);
    return { started: true };
  },
  queue(command) {
    start_queue(command);
    return { started: true };
  },
  queue_status() {
    return mo_queue ? mo_queue.status() : { error: 'no queue' };
  },
  sessions() {
    return { sessions: [...sessions].map((session) => session.bound) };
  },
  exit() {
    for (const session of sessions) session.destroy();
    server.close();
    setTimeout(() => process.exit(0), 20);
    return {};
  },
};

const tls_files = process.argv[3] && process.argv[4];
const server = tls_files
  ? smpp.createServer(
      { key: fs.readFileSync(process.argv[3]), cert: fs.readFileSync(process.argv[4]) },
      on_session,
    )
  : smpp.createServer(on_session);
server.on('error', (error) => {
  emit({ event: 'server_error', error: String(error) });
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  emit({ event: 'listening', port: server.address().port });
});

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    emit({ event: 'result', error: 'bad json: ' + String(error) });
    return;
  }
  const handler = commands[command.cmd];
  const result = handler ? handler(command) : { error: 'unknown command ' + command.cmd };
  emit(Object.assign({ event: 'result', id: command.id, cmd: command.cmd }, result));
});
// The test runner closing our stdin (or dying) ends the peer: no orphaned SMSCs.
input.on('close', () => commands.exit());

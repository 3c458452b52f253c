"use strict";
// The traders' page (README "The page"); the protocol is README "The websocket signal feed".
// The token and the last seq per user and channel live in sessionStorage: they last as long as
// the tab, so a reload reconnects and resumes by itself, and closing the tab forgets the token.
(() => {
  const IST_OFFSET_S = 19800;  // the chart library draws UTC: shifting by +05:30 makes its axis read IST
  const LIMITS = { bars: 300, signals: 200, orders: 200 };
  const ROWS_KEPT = 500;
  const TIMEFRAME_S = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400 };
  const PERSONAL = ["signals", "orders"];
  const SYMBOL = /^[A-Z0-9][A-Z0-9&_.\-]{0,49}$/;  // an NSE-style symbol, as README "Errors" (bad_argument) says
  const KEY = { token: "sharewise.token", symbol: "sharewise.symbol", timeframe: "sharewise.timeframe" };
  const RISING = "#137333", FALLING = "#b3261e", NEUTRAL = "#687482";
  const OVERLAYS = {  // indicator columns: engine.indicators.DEFAULT_COLUMNS
    ema: [{ key: "ema_20", color: "#e8710a", title: "EMA 20" }],
    sma: [{ key: "sma_20", color: "#1a73e8", title: "SMA 20" }],
    bb: [{ key: "bb_upper_20_2", color: "#9334e6", title: "BB upper" },
         { key: "bb_middle_20_2", color: "#9334e6", title: "BB mid", lineStyle: 2 },
         { key: "bb_lower_20_2", color: "#9334e6", title: "BB lower" }],
  };
  const LOWER = {
    rsi: [{ key: "rsi_14", color: "#9334e6", title: "RSI 14", levels: [70, 30] }],
    macd: [{ key: "macd_hist_12_26_9", histogram: true, title: "hist" },
           { key: "macd_12_26_9", color: "#1a73e8", title: "MACD" },
           { key: "macd_signal_12_26_9", color: "#e8710a", title: "signal" }],
  };

  const $ = (id) => document.getElementById(id);
  const session = window.sessionStorage;

  // ---- formatting: every time is shown in IST, every price with 2 decimals ----------------------

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const pad = (n) => String(n).padStart(2, "0");
  function epochSeconds(iso) {
    const ms = Date.parse(iso || "");
    return Number.isFinite(ms) ? Math.floor(ms / 1000) : null;
  }
  function chartTime(iso) {
    const t = epochSeconds(iso);
    return t === null ? null : t + IST_OFFSET_S;
  }
  function istLabel(shifted, withTime = true) {  // shifted: epoch seconds + IST offset
    const d = new Date(shifted * 1000);
    const day = pad(d.getUTCDate()) + " " + MONTHS[d.getUTCMonth()];
    return withTime ? `${day} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} IST` : day;
  }
  function istTime(iso) {
    const t = chartTime(iso);
    return t === null ? "" : istLabel(t);
  }
  const money = new Intl.NumberFormat("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function num(value) {
    return value === null || value === undefined || value === "" || !Number.isFinite(Number(value))
      ? "" : money.format(Number(value));
  }
  function signClass(value) {
    return Number(value) > 0 ? "up" : Number(value) < 0 ? "down-value" : "";
  }

  // ---- state ------------------------------------------------------------------------------

  const state = {
    socket: null, token: session.getItem(KEY.token), authed: false, userId: null, channels: [],
    retryMs: 1000, retryTimer: null, countdown: null, waiting: new Set(),
    filled: { signals: false, orders: false },  // this page holds the channel's history already
    symbol: (session.getItem(KEY.symbol) || "").toUpperCase(), timeframe: session.getItem(KEY.timeframe) || "5m",
    barsSeq: null, bars: [], signals: [], orders: new Map(), symbols: new Set(), positionsTimer: null, positionsAgain: null,
  };

  const seqKey = (channel) => `sharewise.seq.${state.userId}.${channel}`;
  function lastSeq(channel) {
    const value = session.getItem(seqKey(channel));
    return value === null ? null : Number(value);
  }
  function setLastSeq(channel, seq) {
    session.setItem(seqKey(channel), String(seq));
    if (channel === "signals") $("last-seq").textContent = String(seq);
  }

  function setStatus(text, cls) {
    $("status").textContent = text;
    $("status").className = cls;
  }
  function notice(text) { $("notice").textContent = text || ""; }

  // ---- the connection -----------------------------------------------------------------------

  function send(frame) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(frame));
  }

  function connect() {
    clearTimeout(state.retryTimer);
    clearInterval(state.countdown);
    if (!state.token) { setStatus("not connected: paste a token", "down"); return; }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws`);
    state.socket = socket;
    state.authed = false;
    setStatus("connecting…", "wait");
    socket.onopen = () => send({ op: "auth", token: state.token });
    socket.onmessage = (event) => handle(JSON.parse(event.data));
    socket.onclose = (event) => { if (state.socket === socket) closed(event); };
  }

  function closed(event) {
    state.socket = null;
    state.authed = false;
    if (event.code === 4401 || event.code === 4403) {  // the token is refused: retrying cannot help
      forgetToken();
      setStatus(`disconnected: token refused (${event.code}${event.reason ? " " + event.reason : ""}) — paste a new token`,
                "down");
      return;
    }
    if (!state.token) { setStatus("disconnected", "down"); return; }
    const at = Date.now() + state.retryMs;
    const tick = () => setStatus(`reconnecting in ${Math.max(0, Math.ceil((at - Date.now()) / 1000))} s`
                                 + ` (connection closed, code ${event.code})`, "wait");
    tick();
    state.countdown = setInterval(tick, 1000);
    state.retryTimer = setTimeout(connect, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 10000);
  }

  function forgetToken() {
    state.token = null;
    session.removeItem(KEY.token);
  }

  function subscribe(channel, sinceSeq, symbols) {
    const frame = { op: "subscribe", channel };
    if (symbols) frame.symbols = symbols;
    if (sinceSeq !== null && sinceSeq !== undefined) frame.since_seq = sinceSeq;
    send(frame);
  }

  // A channel this page already holds resumes from its last seq; otherwise it is filled from
  // `history` first, and the subscription continues from the seq that history answered with.
  function syncPersonal(channel) {
    if (!state.channels.includes(channel)) return;
    state.waiting.add(channel);
    if (state.filled[channel] && lastSeq(channel) !== null) subscribe(channel, lastSeq(channel));
    else send({ op: "history", channel, limit: LIMITS[channel] });
  }

  // The status reads `live` once the personal channels are subscribed; the chart says in its legend
  // whether its bars are loading.
  function loadChart() {
    if (!state.symbol || !state.authed || !state.channels.includes("bars")) return;
    if (!SYMBOL.test(state.symbol)) { notice(`${state.symbol} is not a symbol`); return; }
    notice("");
    send({ op: "history", channel: "bars", symbol: state.symbol, timeframe: state.timeframe, limit: LIMITS.bars });
  }

  function requestPositions() {
    if (state.channels.includes("orders")) send({ op: "positions" });
  }

  const handlers = {
    auth_ok(msg) {
      if (state.userId !== null && state.userId !== msg.user_id) resetData();
      state.userId = msg.user_id;
      state.authed = true;
      state.channels = msg.channels;
      state.retryMs = 1000;
      state.waiting.clear();
      PERSONAL.forEach(syncPersonal);
      loadChart();
      requestPositions();
      if (state.waiting.size === 0) setStatus("live", "live");
    },
    subscribed(msg) {
      if (msg.channel === "bars") legend(null);
      state.waiting.delete(msg.channel);
      if (state.waiting.size === 0) setStatus("live", "live");
    },
    history(msg) {
      if (msg.channel === "bars") barHistory(msg);
      else personalHistory(msg);
    },
    signal(msg) { receive("signals", msg.seq, msg.data); },
    order(msg) {
      receive("orders", msg.seq, msg.data);
      // A burst of order updates asks for positions once, and once more a little later: the book that a fill
      // changes reaches PostgreSQL through its own sink, maybe after the order's frame reached us.
      clearTimeout(state.positionsTimer);
      clearTimeout(state.positionsAgain);
      state.positionsTimer = setTimeout(requestPositions, 300);
      state.positionsAgain = setTimeout(requestPositions, 2500);
    },
    bar(msg) { liveBar(msg.seq, msg.data); },
    positions(msg) { renderPositions(msg.data); },
    error(msg) {
      if (msg.reason === "unrecoverable" && msg.channel) {  // the history after our seq is gone: start over
        if (msg.channel === "bars") { loadChart(); return; }
        resetChannel(msg.channel);
        syncPersonal(msg.channel);
        return;
      }
      notice(`server: ${msg.reason}${msg.detail ? " — " + msg.detail : ""}`);
    },
  };

  function handle(msg) {
    const handler = handlers[msg.op];
    if (handler) handler(msg);
  }

  // ---- signals and orders -------------------------------------------------------------------

  // Seqs of a personal channel are 1, 2, 3… with no gap (README "Sequence numbers and resume"),
  // and history answers the latest messages with the latest seq: the i-th of n has seq - n + 1 + i.
  function personalHistory(msg) {
    const first = msg.seq - msg.data.length + 1;
    msg.data.forEach((data, i) => receive(msg.channel, first + i, data));
    state.filled[msg.channel] = true;
    if (lastSeq(msg.channel) === null || lastSeq(msg.channel) < msg.seq) setLastSeq(msg.channel, msg.seq);
    subscribe(msg.channel, msg.seq);
    if (msg.channel === "signals" && !state.symbol && state.signals.length) {
      selectSymbol(state.signals[state.signals.length - 1].data.symbol);
    }
  }

  function receive(channel, seq, data) {
    const last = lastSeq(channel);
    if (state.filled[channel] && last !== null && seq <= last) return;  // shown already: never twice
    setLastSeq(channel, seq);
    noteSymbol(data.symbol);
    if (channel === "signals") addSignal(seq, data);
    else addOrder(seq, data);
    // a page opened before the first signal charts the symbol of the first one that arrives
    if (channel === "signals" && state.filled.signals && !state.symbol && data.symbol) selectSymbol(data.symbol);
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function addSignal(seq, data) {
    state.signals.push({ seq, data });
    if (state.signals.length > ROWS_KEPT) state.signals.shift();
    const tr = document.createElement("tr");
    tr.dataset.seq = String(seq);
    tr.dataset.symbol = String(data.symbol || "");
    tr.dataset.id = String(data.id || "");
    cell(tr, istTime(data.timestamp));
    cell(tr, data.symbol, "sym");
    cell(tr, data.signal_type, `side ${data.signal_type}`);
    cell(tr, data.strategy_name);
    cell(tr, data.timeframe);
    cell(tr, num(data.entry_price), "num");
    cell(tr, num(data.target_price), "num");
    cell(tr, num(data.stop_loss), "num");
    cell(tr, num(data.confidence_score), "num");
    applyFilter(tr);
    const rows = $("signals").tBodies[0];
    rows.insertBefore(tr, rows.firstChild);
    while (rows.rows.length > ROWS_KEPT) rows.deleteRow(rows.rows.length - 1);
    if (data.symbol === state.symbol) drawMarkers();
  }

  // The orders channel has one message per state change of an order: the table keeps the latest per id.
  function addOrder(seq, data) {
    state.orders.set(String(data.id), { seq, data });
    const rows = $("orders").tBodies[0];
    const old = rows.querySelector(`tr[data-id="${CSS.escape(String(data.id))}"]`);
    if (old) old.remove();
    const tr = document.createElement("tr");
    tr.dataset.seq = String(seq);
    tr.dataset.id = String(data.id);
    tr.dataset.symbol = String(data.symbol || "");
    tr.dataset.status = String(data.status || "");
    cell(tr, istTime(data.exchange_timestamp || data.order_timestamp || data.updated_at));
    cell(tr, data.symbol, "sym");
    cell(tr, data.transaction_type, `side ${data.transaction_type}`);
    cell(tr, data.filled_quantity ? `${data.filled_quantity}/${data.quantity}` : data.quantity, "num");
    cell(tr, num(data.average_price || data.price), "num");
    cell(tr, data.status + (data.rejection_reason ? ` (${data.rejection_reason})` : ""), `status ${data.status}`);
    cell(tr, data.strategy_name || data.tag);
    applyFilter(tr);
    rows.insertBefore(tr, rows.firstChild);
    while (rows.rows.length > ROWS_KEPT) rows.deleteRow(rows.rows.length - 1);
    if (data.symbol === state.symbol) drawMarkers();
  }

  function renderPositions(data) {
    const rows = $("positions").tBodies[0];
    rows.textContent = "";
    const summary = [];
    for (const portfolio of data.portfolios || []) {
      summary.push(`${portfolio.name}: value ${num(portfolio.total_value)}, cash ${num(portfolio.available_cash)},`
                   + ` unrealized ${num(portfolio.unrealized_pnl)}, realized ${num(portfolio.realized_pnl)}`);
      for (const holding of portfolio.holdings || []) {
        noteSymbol(holding.symbol);
        const tr = document.createElement("tr");
        tr.dataset.symbol = String(holding.symbol);
        tr.dataset.quantity = String(holding.quantity);
        tr.dataset.pnl = String(holding.unrealized_pnl);
        cell(tr, holding.symbol, "sym");
        cell(tr, holding.quantity, "num");
        cell(tr, num(holding.average_price), "num");
        cell(tr, num(holding.current_price), "num");
        cell(tr, num(holding.unrealized_pnl), `num ${signClass(holding.unrealized_pnl)}`);
        cell(tr, portfolio.name);
        rows.appendChild(tr);
      }
    }
    $("portfolio-summary").textContent = summary.join(" · ");
    const trading = data.trading_state || {};
    $("trading-state").textContent = trading.state ? trading.state + (trading.reason ? `: ${trading.reason}` : "") : "";
    $("trading-state").className = `badge ${trading.state || ""}`;
  }

  function wantedSymbols() {
    return $("filter").value.split(/[\s,]+/).filter(Boolean).map((s) => s.toUpperCase());
  }
  function applyFilter(tr) {
    const only = wantedSymbols();
    tr.classList.toggle("hidden", only.length > 0 && !only.includes(tr.dataset.symbol));
  }

  function noteSymbol(symbol) {
    if (!symbol || state.symbols.has(symbol)) return;
    state.symbols.add(symbol);
    const option = document.createElement("option");
    option.value = symbol;
    $("symbols").appendChild(option);
  }

  function resetChannel(channel) {
    state.filled[channel] = false;
    if (state.userId !== null) session.removeItem(seqKey(channel));
    if (channel === "signals") state.signals = [];
    else state.orders.clear();
    $(channel).tBodies[0].textContent = "";
    drawMarkers();
  }

  function resetData() {
    PERSONAL.forEach(resetChannel);
    $("positions").tBodies[0].textContent = "";
  }

  // ---- the chart ------------------------------------------------------------------------------

  const LW = window.LightweightCharts;
  let chart = null, candles = null, markers = null;
  const drawn = new Map();  // indicator column -> its series

  function createChart() {
    if (!LW) {
      $("chart-message").textContent = "chart library not installed: run scripts/sharewise once, "
        + "or npm ci --prefix sinks/feed/web, then restart the feed server";
      $("chart-box").classList.add("missing");
      return;
    }
    chart = LW.createChart($("chart"), {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#1d2733", fontSize: 11,
                panes: { separatorColor: "#d5dbe1" } },
      grid: { vertLines: { color: "#f0f2f5" }, horzLines: { color: "#f0f2f5" } },
      timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#d5dbe1", maxBarSpacing: 14 },
      rightPriceScale: { borderColor: "#d5dbe1" },
      localization: { timeFormatter: (t) => istLabel(t, state.timeframe !== "1d").replace(":00 IST", " IST") },
    });
    candles = chart.addSeries(LW.CandlestickSeries, {
      upColor: RISING, downColor: FALLING, borderVisible: false, wickUpColor: RISING, wickDownColor: FALLING,
    });
    markers = LW.createSeriesMarkers(candles, []);
    chart.subscribeCrosshairMove((param) => legend(param.time));
  }

  function toBar(data) {
    const time = chartTime(data.time);
    if (time === null) return null;
    return { time, open: Number(data.open), high: Number(data.high), low: Number(data.low),
             close: Number(data.close), volume: Number(data.volume), indicators: data.indicators || {} };
  }
  const candle = (b) => ({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });

  const YOUNG_BARS = 80;

  function barHistory(msg) {
    if (msg.symbol !== state.symbol || msg.timeframe !== state.timeframe) return;  // an earlier selection's answer
    const byTime = new Map();
    for (const data of msg.data) {
      const b = toBar(data);
      if (b) byTime.set(b.time, b);
    }
    state.bars = [...byTime.values()].sort((a, b) => a.time - b.time);
    state.barsSeq = msg.seq;
    redraw();
    // a young chart (a session's first bars) fills from the left, with room for the bars to come
    if (chart && state.bars.length < YOUNG_BARS) chart.timeScale().setVisibleLogicalRange({ from: -1, to: YOUNG_BARS });
    else if (chart) chart.timeScale().scrollToRealTime();
    subscribe("bars", msg.seq, [state.symbol]);
  }

  // A live bar may repeat the time of the last one (an update of the open bar): it replaces it.
  function liveBar(seq, data) {
    if (state.barsSeq === null || seq > state.barsSeq) state.barsSeq = seq;
    if (data.symbol !== state.symbol || data.timeframe !== state.timeframe) return;
    const b = toBar(data);
    const bars = state.bars, last = bars[bars.length - 1];
    if (!b || (last && b.time < last.time)) return;  // older than the chart's last bar: drawn already
    if (last && b.time === last.time) bars[bars.length - 1] = b;
    else bars.push(b);
    if (!candles) return;
    candles.update(candle(b));
    for (const [key, series] of drawn) series.update(point(b, key, series.sharewiseHistogram));
    legend(null);
    drawMarkers();
  }

  function point(b, key, histogram) {
    const value = b.indicators[key];
    if (value === null || value === undefined || !Number.isFinite(Number(value))) return { time: b.time };
    const p = { time: b.time, value: Number(value) };
    if (histogram) p.color = p.value >= 0 ? "rgba(19,115,51,.55)" : "rgba(179,38,30,.55)";
    return p;
  }

  function wantedIndicators() {
    const specs = [];
    document.querySelectorAll("#indicators input:checked").forEach((box) => {
      OVERLAYS[box.value].forEach((spec) => specs.push({ ...spec, pane: 0 }));
    });
    (LOWER[$("lower").value] || []).forEach((spec) => specs.push({ ...spec, pane: 1 }));
    return specs;
  }

  // Add the series of newly chosen indicators, remove the others, and (re)fill all from state.bars.
  function redraw() {
    if (!chart) return;
    candles.setData(state.bars.map(candle));
    const specs = wantedIndicators();
    const keys = new Set(specs.map((s) => s.key));
    for (const [key, series] of drawn) {
      if (!keys.has(key)) { chart.removeSeries(series); drawn.delete(key); }
    }
    for (const spec of specs) {
      if (!drawn.has(spec.key)) drawn.set(spec.key, addIndicator(spec));
      const series = drawn.get(spec.key);
      series.setData(state.bars.map((b) => point(b, spec.key, spec.histogram)));
    }
    const panes = chart.panes();
    if (panes.length > 1) { panes[0].setStretchFactor(3); panes[1].setStretchFactor(1); }
    legend(null);
    drawMarkers();
  }

  function addIndicator(spec) {
    const common = { priceLineVisible: false, lastValueVisible: false, title: spec.title };
    const series = spec.histogram
      ? chart.addSeries(LW.HistogramSeries, { ...common, base: 0 }, spec.pane)
      : chart.addSeries(LW.LineSeries, { ...common, color: spec.color, lineWidth: 1.5,
                                          lineStyle: spec.lineStyle || 0, crosshairMarkerVisible: false }, spec.pane);
    series.sharewiseHistogram = Boolean(spec.histogram);
    for (const level of spec.levels || []) {
      series.createPriceLine({ price: level, color: NEUTRAL, lineWidth: 1, lineStyle: 1, axisLabelVisible: false });
    }
    return series;
  }

  // The bar containing `time` (the last bar opening at or before it), or null outside the chart.
  function barAt(time) {
    const bars = state.bars;
    if (time === null || !bars.length || time < bars[0].time) return null;
    if (time >= bars[bars.length - 1].time + TIMEFRAME_S[state.timeframe]) return null;
    let lo = 0, hi = bars.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (bars[mid].time <= time) lo = mid; else hi = mid - 1;
    }
    return bars[lo].time;
  }

  function signalMarker({ seq, data }) {
    const time = barAt(chartTime(data.bar_time || data.timestamp));
    if (time === null) return null;
    const type = String(data.signal_type);
    const up = type === "BUY" || type === "COVER", down = type === "SELL" || type === "SHORT";
    return { time, id: `signal-${seq}`, text: type, size: 1.2,
             position: up ? "belowBar" : "aboveBar", shape: up ? "arrowUp" : down ? "arrowDown" : "circle",
             color: up ? RISING : down ? FALLING : NEUTRAL };
  }

  function fillMarker({ data }) {
    if (data.status !== "COMPLETE") return null;
    const time = barAt(chartTime(data.exchange_timestamp || data.updated_at || data.order_timestamp));
    const price = Number(data.average_price);
    if (time === null || !Number.isFinite(price) || price <= 0) return null;
    const buy = data.transaction_type === "BUY";
    return { time, id: `fill-${data.id}`, position: "atPriceMiddle", price, shape: "circle", size: 0.7,
             color: buy ? "#0b57d0" : "#a142f4" };
  }

  function drawMarkers() {
    if (!markers) return;
    const list = [
      ...state.signals.filter((s) => s.data.symbol === state.symbol).map(signalMarker),
      ...[...state.orders.values()].filter((o) => o.data.symbol === state.symbol).map(fillMarker),
    ].filter(Boolean);
    list.sort((a, b) => a.time - b.time);
    markers.setMarkers(list);
  }

  function legend(time) {
    const bars = state.bars;
    const b = (time && bars.find((x) => x.time === time)) || bars[bars.length - 1];
    const head = `${state.symbol || "no symbol"} · ${state.timeframe} · IST`;
    if (!b) {
      $("legend").textContent = state.symbol ? `${head} · no bars yet` : "pick a symbol to see its chart";
      return;
    }
    const cls = b.close >= b.open ? "up" : "down-value";
    $("legend").innerHTML = "";
    const span = (text, c) => {
      const s = document.createElement("span");
      s.textContent = text;
      if (c) s.className = c;
      $("legend").appendChild(s);
    };
    span(head, "sym");
    span(istLabel(b.time, state.timeframe !== "1d"));
    span(`O ${num(b.open)} H ${num(b.high)} L ${num(b.low)} C ${num(b.close)}`, cls);
  }

  // ---- controls -------------------------------------------------------------------------------

  function selectSymbol(symbol) {
    symbol = String(symbol || "").trim().toUpperCase();
    $("symbol").value = symbol;
    if (symbol === state.symbol && state.bars.length) return;
    state.symbol = symbol;
    session.setItem(KEY.symbol, symbol);
    state.bars = [];
    redraw();
    loadChart();
  }

  function selectTimeframe(timeframe) {
    state.timeframe = timeframe;
    session.setItem(KEY.timeframe, timeframe);
    document.querySelectorAll("#timeframes button").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.tf === timeframe));
    });
    if (chart) chart.applyOptions({ timeScale: { timeVisible: timeframe !== "1d" } });
    state.bars = [];
    redraw();
    loadChart();
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";  // the token is not left in the form
    if (!token) return;
    state.token = token;
    session.setItem(KEY.token, token);
    notice("");
    state.retryMs = 1000;
    if (state.socket) { const old = state.socket; state.socket = null; old.close(1000); }
    connect();
  });
  $("disconnect").addEventListener("click", () => {
    forgetToken();
    clearTimeout(state.retryTimer);
    clearInterval(state.countdown);
    if (state.socket) state.socket.close(1000);
    else setStatus("disconnected", "down");
  });
  $("filter").addEventListener("input", () => {
    document.querySelectorAll("#signals tbody tr, #orders tbody tr").forEach(applyFilter);
  });
  $("symbol").addEventListener("change", () => selectSymbol($("symbol").value));
  document.querySelectorAll("#timeframes button").forEach((b) => {
    b.addEventListener("click", () => selectTimeframe(b.dataset.tf));
  });
  document.querySelectorAll("#indicators input, #lower").forEach((control) => {
    control.addEventListener("change", redraw);
  });
  setInterval(() => send({ op: "ping" }), 15000);

  // Read by the browser tests (tests/sinks/feed/test_page_chart.py) and handy in the console.
  window.sharewise = {
    chartState() {
      const last = state.bars[state.bars.length - 1] || null;
      return {
        library: Boolean(LW), symbol: state.symbol, timeframe: state.timeframe, bars: state.bars.length,
        candles: candles ? candles.data().length : 0, last: last && { ...candle(last), indicators: last.indicators },
        series: [...drawn.keys()], panes: chart ? chart.panes().length : 0,
        markers: markers ? markers.markers().map((m) => ({ id: m.id, time: m.time, text: m.text })) : [],
      };
    },
  };

  createChart();
  $("symbol").value = state.symbol;
  selectTimeframe(state.timeframe);
  connect();
})();

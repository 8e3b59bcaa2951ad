// The live traffic view: one row per finished request, pushed over a WebSocket.
(() => {
  const rows = document.getElementById("live-rows");
  const status = document.getElementById("live-status");
  const MAX_ROWS = 200;
  const cell = (text) => { const td = document.createElement("td"); td.textContent = text; return td; };
  const connect = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/console/live/ws`);
    socket.onopen = () => { status.textContent = "Connected: new requests appear as they finish."; };
    socket.onmessage = (message) => {
      for (const r of JSON.parse(message.data).records) {
        const tr = document.createElement("tr");
        const link = document.createElement("a");
        link.href = `/console/requests/${encodeURIComponent(r.request_id)}/`;
        link.textContent = r.request_id;
        const id = document.createElement("td");
        id.appendChild(link);
        const code = cell(`${r.status}${r.error_code ? " " + r.error_code : ""}`);
        code.className = `status s${String(r.status)[0]}`;
        tr.append(cell(new Date(r.time * 1000).toLocaleTimeString()), id, code,
          cell(r.requested_model || "—"), cell(r.provider || "—"),
          cell((r.input_tokens || 0) + (r.output_tokens || 0)), cell(`${r.latency_ms || 0} ms`));
        rows.prepend(tr);
        while (rows.children.length > MAX_ROWS) rows.lastChild.remove();
      }
    };
    socket.onclose = () => {
      status.textContent = "Disconnected; reconnecting…";
      setTimeout(connect, 2000);
    };
  };
  connect();
})();

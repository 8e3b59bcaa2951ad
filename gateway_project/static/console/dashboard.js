// The dashboard's charts, drawn by the vendored Chart.js from the page's JSON.
(() => {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const colours = ["#2456c8", "#d9822b", "#1e7a3c", "#b3261e", "#7b4bc4", "#0f8b8d", "#8c6d1f"];
  const options = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: "index", intersect: false },
    scales: { y: { beginAtZero: true } },
  };
  const draw = (id, type, datasets) => {
    new Chart(document.getElementById(id), { type, data: { labels: data.labels, datasets }, options });
  };
  const per = (field, suffix = "") => data.series.map((s, i) => ({
    label: s.name + suffix,
    data: s[field],
    borderColor: colours[i % colours.length],
    backgroundColor: colours[i % colours.length],
    spanGaps: true,
  }));
  draw("chart-requests", "bar", per("requests"));
  draw("chart-tokens", "bar", per("tokens"));
  draw("chart-spend", "line", per("spend"));
  draw("chart-error_rate", "line", per("error_rate"));
  const latency = per("p50", " p50").concat(per("p95", " p95").map((d) => ({ ...d, borderDash: [6, 4] })));
  draw("chart-latency", "line", latency);
})();

// Draws /v1/stats (embedded in the page as JSON) with Chart.js. Every chart records the
// labels and numbers it drew on its canvas (data-labels, data-values) once rendered.
"use strict";

const COLOURS = {
  push: "#2e6be6", telegram: "#229ed9", whatsapp: "#25d366", viber: "#7360f2", vk: "#0077ff",
  email: "#f79009", sms: "#d92d20", exhausted: "#98a2b3", expired: "#667085",
  cancelled: "#d0d5dd", suppressed: "#475467", "in progress": "#fdb022",
};
const STAGES = { sent: "#84adff", delivered: "#2e6be6", read: "#1d3f8f", clicked: "#12805c" };

Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

const drawn = {
  id: "drawn",
  afterRender(chart) {
    const canvas = chart.canvas;
    canvas.dataset.labels = JSON.stringify(chart.data.labels);
    canvas.dataset.values = JSON.stringify(
      Object.fromEntries(chart.data.datasets.map((d) => [d.label, d.data])),
    );
    canvas.dataset.drawn = "true";
  },
};

function draw(id, config) {
  config.plugins = [drawn];
  return new Chart(document.getElementById(id), config);
}

function bars(labels, datasets, yTitle) {
  return {
    type: "bar",
    data: { labels, datasets },
    options: {
      scales: {
        y: { beginAtZero: true, ticks: { precision: yTitle ? undefined : 0 }, title: { display: !!yTitle, text: yTitle } },
      },
      plugins: { legend: { display: datasets.length > 1 } },
    },
  };
}

const stats = JSON.parse(document.getElementById("stats-data").textContent);
const channels = stats.channels.map((c) => c.channel);

// "clicked" joins the funnel once any tracked link was clicked in the period.
const stages = ["sent", "delivered", "read"];
if (stats.channels.some((c) => c.clicked > 0)) stages.push("clicked");
draw("funnel", bars(channels, stages.map((stage) => ({
  label: stage, data: stats.channels.map((c) => c[stage]), backgroundColor: STAGES[stage],
}))));

const timed = stats.channels.filter((c) => c.median_seconds_to_read !== null);
draw("read_time", bars(timed.map((c) => c.channel), [{
  label: "median seconds to read",
  data: timed.map((c) => c.median_seconds_to_read),
  backgroundColor: timed.map((c) => COLOURS[c.channel] || "#2e6be6"),
}], "seconds"));

const ends = stats.channels.filter((c) => c.finished_here > 0)
  .map((c) => [c.channel, c.finished_here]);
for (const state of ["exhausted", "expired", "cancelled", "suppressed"]) {
  if (stats.by_state[state]) ends.push([state, stats.by_state[state]]);
}
const open = (stats.by_state.accepted || 0) + (stats.by_state.in_progress || 0);
if (open) ends.push(["in progress", open]);
draw("finished", {
  type: "doughnut",
  data: {
    labels: ends.map(([name]) => name),
    datasets: [{
      label: "notifications",
      data: ends.map(([, n]) => n),
      backgroundColor: ends.map(([name]) => COLOURS[name] || "#98a2b3"),
    }],
  },
  options: { plugins: { legend: { position: "right" } } },
});

const hourly = stats.bucket === "hour";
const times = stats.series.map((p) => (hourly ? p.start.slice(5, 16).replace("T", " ") : p.start.slice(0, 10)));
draw("money", {
  type: "bar",
  data: {
    labels: times,
    datasets: [
      { label: "cost", data: stats.series.map((p) => p.cost), backgroundColor: "#d92d20", order: 2 },
      { label: "SMS-only cost", data: stats.series.map((p) => p.sms_only_cost), backgroundColor: "#98a2b3", order: 2 },
      {
        type: "line", label: "saved so far", data: stats.series.map((p) => p.saved_to_date),
        borderColor: "#12805c", backgroundColor: "#12805c", pointRadius: 4, order: 1,
      },
    ],
  },
  options: { scales: { y: { beginAtZero: true, title: { display: true, text: "money" } } } },
});

draw("redundant", bars(stats.redundant.map((r) => r.channel), [
  { label: "sends", data: stats.redundant.map((r) => r.sends), backgroundColor: "#b42318" },
  { label: "cost", data: stats.redundant.map((r) => r.cost), backgroundColor: "#fda29b" },
]));
if (!stats.redundant.length) document.getElementById("redundant-none").hidden = false;

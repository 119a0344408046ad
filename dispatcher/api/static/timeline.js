// Draws one notification's timeline: a bar per attempt (from its creation to its end) and a
// mark per history event on its lane, at seconds since the notification was accepted.
"use strict";

Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;

const MARKS = {
  accepted: ["#667085", "rectRot"], sent: ["#2e6be6", "circle"], delivered: ["#12805c", "circle"],
  read: ["#1d3f8f", "star"], failed: ["#d92d20", "crossRot"], unknown: ["#f79009", "triangle"],
  retry_scheduled: ["#fdb022", "rect"], escalated: ["#7a5af8", "rectRot"], finished: ["#101828", "rectRounded"],
};
const STATES = { read: "#b2ccff", delivered: "#a6f4c5", sent: "#d1e0ff", failed: "#fecdca", unknown: "#fedf89", escalated: "#e9d7fe", cancelled: "#eaecf0" };

const t = JSON.parse(document.getElementById("timeline-data").textContent);
const types = [...new Set(t.marks.map((m) => m.type))];
const canvas = document.getElementById("timeline");

new Chart(canvas, {
  type: "bar",
  data: {
    labels: t.lanes,
    datasets: [
      {
        type: "bar",
        label: "attempt",
        data: t.lanes.map((lane) => {
          const span = t.spans.find((s) => s.lane === lane);
          return span ? [span.from, Math.max(span.to, span.from + 0.05)] : null;
        }),
        backgroundColor: t.lanes.map((lane) => {
          const span = t.spans.find((s) => s.lane === lane);
          return span ? STATES[span.state] || "#eaecf0" : "transparent";
        }),
        barPercentage: 0.5,
        order: 2,
      },
      ...types.map((type) => ({
        type: "scatter",
        label: type,
        data: t.marks.filter((m) => m.type === type).map((m) => ({ x: m.offset, y: m.lane })),
        backgroundColor: (MARKS[type] || ["#475467"])[0],
        borderColor: (MARKS[type] || ["#475467"])[0],
        pointStyle: (MARKS[type] || [null, "circle"])[1],
        pointRadius: 7,
        order: 1,
      })),
    ],
  },
  options: {
    indexAxis: "y",
    scales: {
      x: { type: "linear", beginAtZero: true, title: { display: true, text: "seconds since accepted" } },
      y: { type: "category", labels: t.lanes },
    },
  },
  plugins: [{
    id: "drawn",
    afterRender(chart) {
      chart.canvas.dataset.lanes = JSON.stringify(chart.data.labels);
      chart.canvas.dataset.marks = JSON.stringify(
        chart.data.datasets.slice(1).map((d) => [d.label, d.data.map((p) => p.y)]),
      );
      chart.canvas.dataset.drawn = "true";
    },
  }],
});

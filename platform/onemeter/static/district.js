/* 区领导小组办公室 charts: data from the page's JSON, ECharts served from /om-static. */
(function () {
  var node = document.getElementById("om-chart-data");
  if (!node || !window.echarts) { return; }
  var data = JSON.parse(node.textContent);
  var fmt = function (v) { return Number(v).toLocaleString("zh-CN"); };
  var base = { animation: false, textStyle: { fontFamily: "sans-serif" },
               tooltip: { trigger: "axis", valueFormatter: fmt } };
  function chart(id, option) {
    var el = document.getElementById(id);
    if (!el) { return; }
    var c = echarts.init(el);
    c.setOption(Object.assign({}, base, option));
    window.addEventListener("resize", function () { c.resize(); });
  }
  var monthly = [];
  Object.keys(data.monthly.series).forEach(function (code) {
    var label = data.utilities[code] || code;
    monthly.push({ name: label + "（当月）", type: "bar", data: data.monthly.series[code].per_month });
    monthly.push({ name: label + "（累计）", type: "line", yAxisIndex: 1, data: data.monthly.series[code].cumulated });
  });
  chart("om-chart-monthly", {
    legend: { top: 0 }, grid: { left: 50, right: 50, top: 50, bottom: 30 },
    xAxis: { type: "category", data: data.monthly.months },
    yAxis: [{ type: "value", name: "当月（个）" }, { type: "value", name: "累计（个）" }],
    series: monthly
  });
  chart("om-chart-tenants", {
    legend: { top: 0 }, grid: { left: 70, right: 20, top: 50, bottom: 30 },
    xAxis: { type: "category", data: data.tenants.names, axisLabel: { interval: 0 } },
    yAxis: { type: "value", name: "户" },
    series: [
      { name: "已完成", type: "bar", stack: "h", data: data.tenants.done },
      { name: "未完成", type: "bar", stack: "h", data: data.tenants.remaining },
      { name: "自愿不改造", type: "bar", stack: "h", data: data.tenants.opted_out }
    ]
  });
  chart("om-chart-categories", {
    legend: { top: 0 }, grid: { left: 70, right: 20, top: 50, bottom: 80 },
    xAxis: { type: "category", data: data.categories.names, axisLabel: { interval: 0, rotate: 20 } },
    yAxis: { type: "value", name: "户" },
    series: [
      { name: "计划户数", type: "bar", data: data.categories.planned },
      { name: "已完成户数", type: "bar", data: data.categories.done }
    ]
  });
})();

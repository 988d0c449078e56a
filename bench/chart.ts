// The comparison as an SVG: one panel per load, one bar per target (median, with a min-max
// whisker), each panel on its own scale since the units differ.

import {
  formatNumber,
  LOAD_LABELS,
  TARGET_LABELS,
  type LoadName,
  type Summary,
  type TargetName,
} from './summary.js';

const COLORS: Record<TargetName, string> = {
  direct: '#9e9e9e',
  nat: '#4c78a8',
  haproxy: '#f58518',
  nginx: '#54a24b',
  'lvsd-packet': '#e45756',
  lvsd: '#ff9da6',
  'lvsd-dr': '#b279a2',
};

const PANEL_WIDTH = 260;
const PANEL_GAP = 30;
const PLOT_HEIGHT = 200;
const TOP = 60;
const LEFT = 20;

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderChart(
  summary: Summary,
  targets: readonly TargetName[],
  loads: readonly LoadName[],
  caption: string,
): string {
  const width = LEFT * 2 + loads.length * PANEL_WIDTH + (loads.length - 1) * PANEL_GAP;
  const height = TOP + PLOT_HEIGHT + 70;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="20" font-size="14" font-weight="bold">lvsd beside kernel NAT, HAProxy and nginx stream (median, min-max)</text>`,
    `<text x="${LEFT}" y="38" fill="#555">${escape(caption)}</text>`,
  ];
  loads.forEach((load, p) => {
    const x0 = LEFT + p * (PANEL_WIDTH + PANEL_GAP);
    const base = TOP + PLOT_HEIGHT;
    const cells = targets.map((t) => summary[t]?.[load]?.rate ?? null);
    const top = Math.max(...cells.map((c) => c?.max ?? 0)) || 1;
    const slot = PANEL_WIDTH / targets.length;
    const barWidth = slot * 0.6;
    const y = (v: number) => base - (v / top) * PLOT_HEIGHT;
    const { title, unit } = LOAD_LABELS[load];
    parts.push(
      `<text x="${x0 + PANEL_WIDTH / 2}" y="${TOP - 6}" text-anchor="middle" font-weight="bold">${escape(title)}, ${unit}</text>`,
      `<line x1="${x0}" y1="${base}" x2="${x0 + PANEL_WIDTH}" y2="${base}" stroke="#333"/>`,
    );
    targets.forEach((target, i) => {
      const cx = x0 + slot * i + slot / 2;
      const cell = cells[i];
      parts.push(
        `<text x="${cx}" y="${base + 14}" text-anchor="middle" transform="rotate(25 ${cx} ${base + 14})" dx="14">${escape(TARGET_LABELS[target])}</text>`,
      );
      if (!cell) {
        parts.push(`<text x="${cx}" y="${base - 6}" text-anchor="middle" fill="#888">n/a</text>`);
        return;
      }
      const h = base - y(cell.median);
      parts.push(
        `<rect x="${cx - barWidth / 2}" y="${y(cell.median)}" width="${barWidth}" height="${h}" fill="${COLORS[target]}"><title>${escape(
          `${TARGET_LABELS[target]}: ${formatNumber(cell.median)} ${unit} (${formatNumber(cell.min)}-${formatNumber(cell.max)})`,
        )}</title></rect>`,
        `<line x1="${cx}" y1="${y(cell.min)}" x2="${cx}" y2="${y(cell.max)}" stroke="#222"/>`,
        `<line x1="${cx - 4}" y1="${y(cell.max)}" x2="${cx + 4}" y2="${y(cell.max)}" stroke="#222"/>`,
        `<line x1="${cx - 4}" y1="${y(cell.min)}" x2="${cx + 4}" y2="${y(cell.min)}" stroke="#222"/>`,
        `<text x="${cx}" y="${y(cell.max) - 4}" text-anchor="middle">${formatNumber(cell.median)}</text>`,
      );
    });
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}

#include "halfserve/bench/bench_report.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "halfserve/bench/gemm_series.h"
#include "halfserve/util/error.h"

namespace halfserve {

namespace {

std::string format_ms(double ms) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(ms < 10 ? 2 : 1) << ms << "ms";
  return out.str();
}

std::string format_mb(uint64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / 1e6 << " MB";
  return out.str();
}

std::string row_name(const GridSeries& series, int64_t length) {
  if (series.engine == "halfserve") return series.precision + " frozen, len " + std::to_string(length);
  return series.engine + " " + series.precision + ", len " + std::to_string(length);
}

void table_header(std::ostringstream& out, const std::string& corner, const std::vector<int64_t>& batches) {
  out << "| " << corner << " |";
  for (const int64_t batch : batches) out << " " << batch << " |";
  out << "\n|---|";
  for (size_t i = 0; i < batches.size(); ++i) out << "---|";
  out << "\n";
}

const GridSeries* find_series(const BenchReport& report, const std::string& engine, const std::string& precision) {
  for (const auto& series : report.series)
    if (series.engine == engine && series.precision == precision && series.skipped.empty()) return &series;
  return nullptr;
}

void ratio_table(std::ostringstream& out, const BenchReport& report, const GridSeries& numerator,
                 const GridSeries& denominator, const std::string& title) {
  out << "\n" << title << "\n\n";
  table_header(out, "length \\ batch", report.batches);
  for (const int64_t length : report.lengths) {
    out << "| len " << length << " |";
    for (const int64_t batch : report.batches) {
      const LatencyCell* slow = numerator.find(length, batch);
      const LatencyCell* fast = denominator.find(length, batch);
      if (slow && fast && fast->median_ms > 0) out << " " << std::fixed << std::setprecision(2) << slow->median_ms / fast->median_ms << "x |";
      else out << " - |";
    }
    out << "\n";
  }
}

std::string tick_label(double value) {
  std::ostringstream out;
  out << value;  // default float format: 0.5, 2, 1000
  return out.str();
}

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

BenchReport run_bench(const FrozenModel& model, const std::string& model_path, const BenchOptions& options) {
  BenchReport report;
  report.machine = describe_machine();
  report.model_path = model_path;
  report.lengths = options.grid.lengths;
  report.batches = options.grid.batches;
  report.ragged = options.grid.ragged;
  const BertConfig& config = model.metadata.config;
  const GridInputs inputs = make_grid_inputs(options.grid, config.vocab_size, config.max_positions);
  std::vector<std::string> precision_names;
  for (const Precision precision : options.precisions) {
    report.series.push_back(run_halfserve_series(model, precision, options.grid, inputs));
    precision_names.emplace_back(precision_name(precision));
  }
  // How far each reduced precision's labels move from fp32's, over every real token the grid ran.
  if (const GridSeries* fp32 = find_series(report, "halfserve", "fp32"); fp32 != nullptr && !fp32->grid_labels.empty()) {
    for (auto& series : report.series) {
      if (&series == fp32 || series.grid_labels.size() != fp32->grid_labels.size()) continue;
      size_t same = 0;
      for (size_t i = 0; i < series.grid_labels.size(); ++i) same += series.grid_labels[i] == fp32->grid_labels[i];
      series.fp32_agreement = static_cast<double>(same) / static_cast<double>(series.grid_labels.size());
    }
  }
  for (const auto& peer : options.peers) {
    try {
      if (peer == "gemm") {
        for (const Precision precision : options.precisions)
          report.series.push_back(run_gemm_series(config, static_cast<int64_t>(model.metadata.labels.size()), precision,
                                                  options.grid, inputs));
        continue;
      }
      if (!options.run_peer) throw Error("peer " + peer + ": no peer runner was given (halfserve bench runs them)");
      std::vector<std::string> asked = precision_names;
      // Peers with an int8 path report it even when halfserve's own int8 is not timed.
      if (std::find(asked.begin(), asked.end(), "int8") == asked.end()) asked.emplace_back("int8");
      for (auto& series : options.run_peer(peer, model_path, asked, options.grid, inputs)) {
        const GridSeries* reference = find_series(report, "halfserve", series.precision);
        if (reference == nullptr) reference = find_series(report, "halfserve", "fp32");
        if (reference != nullptr && !series.check_labels.empty() && !reference->check_labels.empty())
          series.label_agreement = label_agreement(inputs.check, series.check_labels, reference->check_labels);
        report.series.push_back(std::move(series));
      }
    } catch (const Error& e) {
      report.notes.push_back(e.what());
    }
  }
  return report;
}

std::string format_markdown(const BenchReport& report) {
  std::ostringstream out;
  out << "Median milliseconds per batch; " << (report.ragged ? "ragged rows (real lengths uniform over 25-100 % of the length)"
                                                              : "full-length rows")
      << ". Machine: " << report.machine << ". Model: " << report.model_path << ".\n\n";
  table_header(out, "model \\ batch", report.batches);
  for (const auto& series : report.series) {
    if (!series.skipped.empty()) continue;
    for (const int64_t length : report.lengths) {
      out << "| " << row_name(series, length) << " |";
      for (const int64_t batch : report.batches) {
        const LatencyCell* cell = series.find(length, batch);
        out << " " << (cell != nullptr ? format_ms(cell->median_ms) : "-") << " |";
      }
      out << "\n";
    }
  }
  out << "\n";
  const GridSeries* fp32 = find_series(report, "halfserve", "fp32");
  for (const auto& series : report.series) {
    out << "- " << series.engine << " " << series.precision << ": ";
    if (!series.skipped.empty()) {
      out << "skipped: " << series.skipped << "\n";
      continue;
    }
    out << series.description;
    if (series.file_size) {
      out << "; file " << format_mb(*series.file_size);
      if (fp32 != nullptr && fp32->file_size && series.precision != "fp32")
        out << " (" << std::fixed << std::setprecision(1) << 100.0 * static_cast<double>(*series.file_size) / static_cast<double>(*fp32->file_size)
            << " % of fp32)";
    }
    if (series.peak_rss) out << "; peak RSS " << format_mb(*series.peak_rss);
    if (series.fp32_agreement)
      out << "; labels agree with halfserve fp32 on " << std::fixed << std::setprecision(2) << 100 * *series.fp32_agreement
          << " % of the grid's " << series.grid_labels.size() << " real tokens";
    if (series.label_agreement)
      out << "; labels agree with halfserve on " << std::fixed << std::setprecision(2) << 100 * *series.label_agreement
          << " % of check positions";
    out << "\n";
  }
  for (const auto& note : report.notes) out << "- note: " << note << "\n";

  if (fp32 != nullptr) {
    for (const auto& series : report.series) {
      if (series.engine != "halfserve" || series.precision == "fp32") continue;
      ratio_table(out, report, *fp32, series,
                  "Speed-up of halfserve " + series.precision + " over halfserve fp32 (fp32 median / " + series.precision + " median):");
    }
  }
  for (const auto& series : report.series) {
    if (series.engine == "halfserve" || !series.skipped.empty()) continue;
    const GridSeries* ours = find_series(report, "halfserve", series.precision);
    if (ours == nullptr) continue;
    const std::string title = series.engine == "gemm"
                                  ? "Whole model against its GEMMs alone, " + series.precision + " (halfserve median / GEMM-only median; 1.00x = at the GEMM limit):"
                                  : "Speed-up of halfserve over " + series.engine + " " + series.precision + " (" + series.engine +
                                        " median / halfserve median):";
    if (series.engine == "gemm") ratio_table(out, report, *ours, series, title);
    else ratio_table(out, report, series, *ours, title);
  }
  return out.str();
}

std::string format_csv(const BenchReport& report) {
  std::ostringstream out;
  out << "engine,precision,length,batch,median_ms,p90_ms,tokens_per_second,runs\n";
  for (const auto& series : report.series)
    for (const auto& cell : series.cells)
      out << series.engine << "," << series.precision << "," << cell.length << "," << cell.batch << "," << cell.median_ms << ","
          << cell.p90_ms << "," << cell.tokens_per_second << "," << cell.samples_ms.size() << "\n";
  return out.str();
}

std::string format_json(const BenchReport& report) {
  nlohmann::ordered_json out;
  out["machine"] = report.machine;
  out["model"] = report.model_path;
  out["lengths"] = report.lengths;
  out["batches"] = report.batches;
  out["ragged"] = report.ragged;
  out["series"] = nlohmann::ordered_json::array();
  for (const auto& series : report.series) {
    nlohmann::ordered_json entry = {{"engine", series.engine}, {"precision", series.precision}, {"description", series.description}};
    if (!series.skipped.empty()) entry["skipped"] = series.skipped;
    if (series.file_size) entry["file_size"] = *series.file_size;
    if (series.peak_rss) entry["peak_rss"] = *series.peak_rss;
    if (series.label_agreement) entry["label_agreement"] = *series.label_agreement;
    if (series.fp32_agreement) entry["fp32_label_agreement"] = *series.fp32_agreement;
    entry["cells"] = nlohmann::ordered_json::array();
    for (const auto& cell : series.cells)
      entry["cells"].push_back({{"length", cell.length}, {"batch", cell.batch}, {"median_ms", cell.median_ms}, {"p90_ms", cell.p90_ms},
                                {"tokens_per_second", cell.tokens_per_second}, {"samples_ms", cell.samples_ms}});
    out["series"].push_back(entry);
  }
  out["notes"] = report.notes;
  return out.dump(2) + "\n";
}

std::string format_svg(const BenchReport& report) {
  constexpr double kWidth = 960, kHeight = 600, kLeft = 80, kRight = 330, kTop = 40, kBottom = 60;
  double low = 1e300, high = 0;
  for (const auto& series : report.series)
    for (const auto& cell : series.cells)
      if (cell.median_ms > 0) low = std::min(low, cell.median_ms), high = std::max(high, cell.median_ms);
  if (high <= 0) low = 1, high = 10;
  const double y_min = std::floor(std::log10(low)), y_max = std::max(y_min + 1, std::ceil(std::log10(high)));
  const double x_min = std::log2(static_cast<double>(std::max<int64_t>(1, *std::min_element(report.batches.begin(), report.batches.end()))));
  const double x_max = std::max(x_min + 1, std::log2(static_cast<double>(*std::max_element(report.batches.begin(), report.batches.end()))));
  auto x_of = [&](double batch) { return kLeft + (std::log2(batch) - x_min) / (x_max - x_min) * (kWidth - kLeft - kRight); };
  auto y_of = [&](double ms) { return kHeight - kBottom - (std::log10(ms) - y_min) / (y_max - y_min) * (kHeight - kTop - kBottom); };
  // One colour per series (engine x precision), spread around the hue circle; lengths differ by dash.
  size_t drawn_series = 0;
  for (const auto& series : report.series) drawn_series += series.skipped.empty() ? 1 : 0;
  auto color_of = [&](size_t index) {
    std::ostringstream color;
    color << "hsl(" << static_cast<int>(360.0 * static_cast<double>(index) / static_cast<double>(std::max<size_t>(1, drawn_series)))
          << ",70%," << (index % 2 ? 35 : 50) << "%)";
    return color.str();
  };
  std::ostringstream out;
  out << std::fixed << std::setprecision(1);
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight << "\" viewBox=\"0 0 " << kWidth
      << " " << kHeight << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  out << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  out << "<text x=\"" << kLeft << "\" y=\"24\" font-size=\"15\">Median latency per batch (ms, log) against batch size (log)</text>\n";
  for (double decade = y_min; decade <= y_max; ++decade)
    for (const double step : {1.0, 2.0, 5.0}) {
      const double ms = step * std::pow(10.0, decade);
      if (std::log10(ms) > y_max + 1e-9) continue;
      const double y = y_of(ms);
      out << "<line x1=\"" << kLeft << "\" x2=\"" << kWidth - kRight << "\" y1=\"" << y << "\" y2=\"" << y
          << "\" stroke=\"#ddd\"/>\n<text x=\"" << kLeft - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << tick_label(ms)
          << "</text>\n";
    }
  for (const int64_t batch : report.batches) {
    const double x = x_of(static_cast<double>(batch));
    out << "<line x1=\"" << x << "\" x2=\"" << x << "\" y1=\"" << kTop << "\" y2=\"" << kHeight - kBottom << "\" stroke=\"#eee\"/>\n"
        << "<text x=\"" << x << "\" y=\"" << kHeight - kBottom + 18 << "\" text-anchor=\"middle\">" << batch << "</text>\n";
  }
  out << "<text x=\"" << (kLeft + kWidth - kRight) / 2 << "\" y=\"" << kHeight - 16 << "\" text-anchor=\"middle\">batch size</text>\n";
  int line = 0;
  size_t series_index = 0;
  for (const auto& series : report.series) {
    if (!series.skipped.empty()) continue;
    const std::string color = color_of(series_index++);
    for (size_t l = 0; l < report.lengths.size(); ++l, ++line) {
      out << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\"" << (l % 2 ? " stroke-dasharray=\"6 3\"" : "")
          << " points=\"";
      for (const int64_t batch : report.batches)
        if (const LatencyCell* cell = series.find(report.lengths[l], batch); cell != nullptr && cell->median_ms > 0)
          out << x_of(static_cast<double>(batch)) << "," << y_of(cell->median_ms) << " ";
      out << "\"/>\n";
      const double legend_y = kTop + 16.0 * line;
      out << "<line x1=\"" << kWidth - kRight + 20 << "\" x2=\"" << kWidth - kRight + 44 << "\" y1=\"" << legend_y << "\" y2=\"" << legend_y
          << "\" stroke=\"" << color << "\" stroke-width=\"2\"" << (l % 2 ? " stroke-dasharray=\"6 3\"" : "") << "/>\n"
          << "<text x=\"" << kWidth - kRight + 50 << "\" y=\"" << legend_y + 4 << "\">" << xml_escape(row_name(series, report.lengths[l]))
          << "</text>\n";
    }
  }
  out << "</svg>\n";
  return out.str();
}

}  // namespace halfserve

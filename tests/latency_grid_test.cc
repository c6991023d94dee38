#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "halfserve/bench/bench_report.h"
#include "test_support.h"

namespace halfserve {
namespace {

using testing::Contains;

TEST(LatencyGridTest, Statistics) {
  EXPECT_DOUBLE_EQ(median({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9), 9);
  EXPECT_DOUBLE_EQ(percentile({5}, 0.9), 5);
  InputBatch in;
  in.batch = 2;
  in.length = 4;
  in.attention_mask = {1, 1, 1, 0, 1, 0, 0, 0};
  const LatencyCell cell = summarize_cell(in, {2.0, 4.0, 1.0});
  EXPECT_DOUBLE_EQ(cell.median_ms, 2.0);
  EXPECT_DOUBLE_EQ(cell.p90_ms, 4.0);
  EXPECT_DOUBLE_EQ(cell.tokens_per_second, 4 / 0.002);  // real tokens only
  EXPECT_DOUBLE_EQ(label_agreement(in, {1, 2, 3, 9, 1, 9, 9, 9}, {1, 2, 0, 0, 1, 0, 0, 0}), 0.75);
}

TEST(LatencyGridTest, RaggedInputsKeepAtLeastAQuarterOfEachRow) {
  GridOptions options;
  options.lengths = {40};
  options.batches = {64};
  options.ragged = true;
  const GridInputs inputs = make_grid_inputs(options, 300, 64);
  const InputBatch& cell = inputs.cells.front();
  int64_t shortest = 40, longest = 0;
  for (int64_t r = 0; r < cell.batch; ++r) {
    int64_t real = 0;
    for (int64_t t = 0; t < cell.length; ++t) real += cell.attention_mask[static_cast<size_t>(r * cell.length + t)];
    shortest = std::min(shortest, real);
    longest = std::max(longest, real);
  }
  EXPECT_GE(shortest, 10);
  EXPECT_LE(longest, 40);
  EXPECT_LT(shortest, longest);
}

class BenchReportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    BenchOptions options;
    options.grid.lengths = {8, 16};
    options.grid.batches = {1, 2, 4};
    options.grid.seconds_per_cell = 0;
    options.grid.min_repetitions = 2;
    options.peers = {"gemm"};
    int progress_lines = 0;
    options.grid.progress = [&](const std::string&) { ++progress_lines; };
    report_ = new BenchReport(run_bench(testing::tiny_model(), "tiny.safetensors", options));
    progress_lines_ = progress_lines;
  }
  static void TearDownTestSuite() { delete report_; }
  static BenchReport* report_;
  static int progress_lines_;
};
BenchReport* BenchReportTest::report_ = nullptr;
int BenchReportTest::progress_lines_ = 0;

TEST_F(BenchReportTest, EverySeriesHasEveryCell) {
  ASSERT_EQ(report_->series.size(), 3u + 3u);  // halfserve fp32/fp16/bf16, gemm fp32/fp16/bf16
  EXPECT_EQ(progress_lines_, 6 * 6);
  for (const auto& series : report_->series) {
    EXPECT_EQ(series.cells.size(), 6u) << series.engine << " " << series.precision;
    for (const auto& cell : series.cells) {
      EXPECT_EQ(cell.samples_ms.size(), 2u);
      EXPECT_GT(cell.median_ms, 0);
      EXPECT_GE(cell.p90_ms, cell.median_ms);
      EXPECT_GT(cell.tokens_per_second, 0);
    }
  }
  EXPECT_LT(*report_->series[1].file_size, *report_->series[0].file_size);  // fp16 file is smaller
  EXPECT_GT(*report_->series[0].peak_rss, 0u);
  EXPECT_EQ(report_->series[0].check_labels.size(), 4u * 32u);
}

TEST_F(BenchReportTest, ReducedPrecisionsAreComparedWithFp32OnEveryRealToken) {
  const GridSeries& fp32 = report_->series[0];
  ASSERT_EQ(fp32.precision, "fp32");
  EXPECT_EQ(fp32.grid_labels.size(), (1u + 2u + 4u) * (8u + 16u));  // full-length rows: every token is real
  EXPECT_FALSE(fp32.fp32_agreement.has_value());
  for (size_t i : {1u, 2u}) {
    const GridSeries& reduced = report_->series[i];
    ASSERT_TRUE(reduced.fp32_agreement.has_value()) << reduced.precision;
    EXPECT_EQ(reduced.grid_labels.size(), fp32.grid_labels.size());
    // The tiny random model's logits are close together, so a few labels may flip; most must not.
    EXPECT_GT(*reduced.fp32_agreement, 0.9) << reduced.precision;
    EXPECT_LE(*reduced.fp32_agreement, 1.0);
  }
  EXPECT_FALSE(report_->series[3].fp32_agreement.has_value());  // gemm series have no labels
  EXPECT_TRUE(Contains(format_markdown(*report_), "labels agree with halfserve fp32 on "));
  EXPECT_TRUE(Contains(format_json(*report_), "fp32_label_agreement"));
}

TEST_F(BenchReportTest, MarkdownHasTheSeedLayoutAndRatios) {
  const std::string table = format_markdown(*report_);
  EXPECT_TRUE(Contains(table, "| model \\ batch | 1 | 2 | 4 |"));
  for (const char* row : {"| fp32 frozen, len 8 |", "| fp16 frozen, len 16 |", "| bf16 frozen, len 8 |", "| gemm fp32, len 16 |"})
    EXPECT_TRUE(Contains(table, row));
  EXPECT_TRUE(Contains(table, "Speed-up of halfserve bf16 over halfserve fp32"));
  EXPECT_TRUE(Contains(table, "Whole model against its GEMMs alone, fp32"));
  // Every row of the main table has one cell per batch.
  std::istringstream lines(table);
  std::string line;
  int rows = 0;
  while (std::getline(lines, line))
    if (line.find(" frozen, len ") != std::string::npos || line.rfind("| gemm ", 0) == 0) {
      EXPECT_EQ(std::count(line.begin(), line.end(), '|'), 5) << line;
      ++rows;
    }
  EXPECT_EQ(rows, 12);
}

TEST_F(BenchReportTest, CsvAndJsonSchemas) {
  const std::string csv = format_csv(*report_);
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "engine,precision,length,batch,median_ms,p90_ms,tokens_per_second,runs");
  int rows = 0;
  const std::regex row(R"(^(halfserve|gemm),(fp32|fp16|bf16),(8|16),(1|2|4),[0-9.e-]+,[0-9.e-]+,[0-9.e+-]+,2$)");
  while (std::getline(lines, line)) {
    EXPECT_TRUE(std::regex_match(line, row)) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 36);
  const auto json = nlohmann::json::parse(format_json(*report_));
  EXPECT_EQ(json["lengths"], (std::vector<int64_t>{8, 16}));
  ASSERT_EQ(json["series"].size(), 6u);
  EXPECT_EQ(json["series"][0]["engine"], "halfserve");
  EXPECT_EQ(json["series"][0]["cells"][0]["samples_ms"].size(), 2u);
  EXPECT_TRUE(json["series"][0].contains("file_size"));
}

TEST_F(BenchReportTest, SvgIsWellFormed) {
  const std::string svg = format_svg(*report_);
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_TRUE(svg.ends_with("</svg>\n"));
  // One line per series and length, and every opened element closed.
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++polylines;
  EXPECT_EQ(polylines, 12u);
  std::vector<std::string> open;
  const std::regex tag(R"(<(/?)([a-z]+)[^>]*?(/?)>)");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), tag); it != std::sregex_iterator(); ++it) {
    const auto& match = *it;
    if (match[3] == "/") continue;
    if (match[1] == "/") {
      ASSERT_FALSE(open.empty());
      EXPECT_EQ(open.back(), match[2].str());
      open.pop_back();
    } else {
      open.push_back(match[2].str());
    }
  }
  EXPECT_TRUE(open.empty());
}

}  // namespace
}  // namespace halfserve

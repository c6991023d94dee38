#include <gtest/gtest.h>

#include "halfserve/bench/latency_grid.h"
#include "test_support.h"

namespace halfserve {
namespace {

TEST(LatencyGridTest, Statistics) {
  EXPECT_DOUBLE_EQ(median({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9), 9);
  EXPECT_DOUBLE_EQ(percentile({5}, 0.9), 5);
}

TEST(LatencyGridTest, SeedLayoutTableOnATinyModel) {
  LatencyGridOptions options;
  options.lengths = {8, 16};
  options.batches = {1, 2, 4};
  options.seconds_per_cell = 0;
  options.min_repetitions = 2;
  int progress_lines = 0;
  options.progress = [&](const std::string&) { ++progress_lines; };
  const LatencyGridResult result = run_latency_grid(testing::tiny_model(), options);
  EXPECT_EQ(result.cells.size(), 3u * 2u * 3u);
  EXPECT_EQ(progress_lines, 18);
  for (const auto& cell : result.cells) {
    EXPECT_EQ(cell.samples_ms.size(), 2u);
    EXPECT_GT(cell.median_ms, 0);
    EXPECT_GE(cell.p90_ms, cell.median_ms);
  }
  EXPECT_LT(result.file_sizes.at(Precision::fp16), result.file_sizes.at(Precision::fp32));
  const std::string table = format_latency_table(result, options);
  EXPECT_NE(table.find("| model \\ batch | 1 | 2 | 4 |"), std::string::npos) << table;
  for (const char* row : {"| fp32 frozen, len 8 |", "| fp16 frozen, len 16 |", "| bf16 frozen, len 8 |"})
    EXPECT_NE(table.find(row), std::string::npos) << row << "\n" << table;
  EXPECT_NE(table.find("Speed-up of bf16 over fp32"), std::string::npos);
}

}  // namespace
}  // namespace halfserve

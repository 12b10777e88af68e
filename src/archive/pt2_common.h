// Entry paths of the .pt2 layout, shared by the reader and the writer (relative to the root).
#pragma once

#include <string>

namespace ember {

inline constexpr const char* kArchiveFormatPath = "archive_format";
inline constexpr const char* kArchiveVersionPath = "archive_version";
inline constexpr const char* kDataVersionPath = ".data/version";
inline constexpr const char* kByteorderPath = "byteorder";
inline constexpr const char* kSerializationIdPath = ".data/serialization_id";
inline constexpr const char* kModelsDir = "models/";
inline constexpr const char* kDataDir = "data/";

// data/weights/<model>_weights_config.json, data/constants/<model>_constants_config.json
inline std::string config_path(const std::string& model, const std::string& folder) {
  return std::string(kDataDir) + folder + "/" + model + "_" + folder + "_config.json";
}
inline std::string sample_inputs_path(const std::string& model) {
  return std::string(kDataDir) + "sample_inputs/" + model + ".pt";
}

}  // namespace ember

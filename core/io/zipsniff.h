#pragma once
#include <string>

#include "result.h"

namespace quantlens {

enum class ZipKind { TorchCheckpoint, Npz };

// Lists the archive's members (never extracts): a */data.pkl member means torch.save,
// otherwise .npy members mean np.savez.
Result<ZipKind> sniffZip(const std::string& path);

}  // namespace quantlens

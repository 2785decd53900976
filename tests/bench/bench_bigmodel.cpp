// Benchmark (not a test): whole-model figures at real scale. Writes, on the fly and never
// into the project, (1) a TinyLlama-1.1B-shaped bf16 Llama as 2 safetensors shards plus
// the index, and (2) a 768 MiB float32 tensor; then times `quantlens-cli inspect` on the
// first and `quantlens-cli quantize` on the second into HDF5, safetensors, a npy folder and
// compressed-tensors, each in a child process, and prints wall time and peak RSS beside
// the sizes; with the GUI built, also the window's first picture on the model
// (bench_firstpicture). Deletes everything it wrote.
//   bench_bigmodel [DIR]   (DIR default: $TMPDIR or /tmp; needs ~3.2 GB free)
//   QUANTLENS_BENCH_CLI=/other/build/quantlens-cli bench_bigmodel   (before/after)
//   QUANTLENS_BENCH_MANY_ONLY=1 bench_bigmodel   (only (3): twelve 64 MiB tensors into all five int8 formats)
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Spec {
    std::string name;
    std::vector<int64_t> shape;
};

int64_t numel(const Spec& s)
{
    int64_t n = 1;
    for (int64_t d : s.shape)
        n *= d;
    return n;
}

// TinyLlama-1.1B (LlamaForCausalLM): vocab 32000, hidden 2048, 22 layers, 32 heads with 4
// key/value heads (k/v projections 256 wide), MLP 5632.
std::vector<Spec> tinyLlama()
{
    const int64_t h = 2048, kv = 256, ff = 5632, vocab = 32000;
    std::vector<Spec> v{{"model.embed_tokens.weight", {vocab, h}}};
    for (int l = 0; l < 22; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        v.push_back({p + "self_attn.q_proj.weight", {h, h}});
        v.push_back({p + "self_attn.k_proj.weight", {kv, h}});
        v.push_back({p + "self_attn.v_proj.weight", {kv, h}});
        v.push_back({p + "self_attn.o_proj.weight", {h, h}});
        v.push_back({p + "mlp.gate_proj.weight", {ff, h}});
        v.push_back({p + "mlp.up_proj.weight", {ff, h}});
        v.push_back({p + "mlp.down_proj.weight", {h, ff}});
        v.push_back({p + "input_layernorm.weight", {h}});
        v.push_back({p + "post_attention_layernorm.weight", {h}});
    }
    v.push_back({"model.norm.weight", {h}});
    v.push_back({"lm_head.weight", {vocab, h}});
    return v;
}

// A pattern of plausible weights (|w| in 2^-9 .. 2^-3, random sign), reused with a shift
// per tensor so writing 2 GB costs only the disk.
std::vector<uint8_t> pattern(size_t bytes, unsigned elemBytes)
{
    std::vector<uint8_t> p(bytes);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i + elemBytes <= bytes; i += elemBytes) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        const uint32_t sign = uint32_t(s >> 63) << 31;
        const uint32_t exp = 118u + uint32_t((s >> 40) % 6u);
        const uint32_t f = sign | (exp << 23) | uint32_t(s & 0x7fffff);
        if (elemBytes == 2) {
            p[i] = uint8_t(f >> 16);
            p[i + 1] = uint8_t(f >> 24);
        } else {
            std::memcpy(&p[i], &f, 4);
        }
    }
    return p;
}

bool writeShard(const std::string& path, const std::vector<Spec>& specs, const char* dtype, unsigned es,
                const std::vector<uint8_t>& pat)
{
    std::string json = "{\"__metadata__\":{\"format\":\"pt\"}";
    int64_t off = 0;
    for (const Spec& s : specs) {
        const int64_t b = numel(s) * es;
        json += ",\"" + s.name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[";
        for (size_t i = 0; i < s.shape.size(); ++i)
            json += (i ? "," : "") + std::to_string(s.shape[i]);
        json += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + b) + "]}";
        off += b;
    }
    json += "}";
    while (json.size() % 8)
        json += ' ';
    std::ofstream out(path, std::ios::binary);
    const uint64_t len = json.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out.write(json.data(), std::streamsize(json.size()));
    size_t shift = 0;
    for (const Spec& s : specs) {
        int64_t left = numel(s) * es;
        shift = (shift + 4096 + es) % (pat.size() / 2) / es * es;
        while (left > 0) {
            const size_t n = size_t(std::min<int64_t>(left, int64_t(pat.size() - shift)));
            out.write(reinterpret_cast<const char*>(pat.data() + shift), std::streamsize(n));
            left -= int64_t(n);
        }
    }
    return bool(out);
}

struct Run {
    int code = -1;
    double seconds = 0;
    double cpuSeconds = 0;  // user + system: what the run costs on a busy shared machine
    long maxRssKb = 0;
};

Run runChild(const std::vector<std::string>& args, bool keepStdout = false)
{
    std::fflush(stdout);  // else the child inherits and repeats our buffered lines
    const auto t0 = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
        std::vector<char*> argv;
        for (const auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        if (!keepStdout && !std::freopen("/dev/null", "w", stdout))
            ::_exit(126);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    int status = 0;
    rusage ru{};
    ::wait4(pid, &status, 0, &ru);
    Run r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.maxRssKb = ru.ru_maxrss;
    r.cpuSeconds = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    return r;
}

std::string cpuName()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line, name, family, model;
    while (std::getline(in, line)) {
        auto val = [&] { return line.substr(line.find(':') + 2); };
        if (name.empty() && line.rfind("model name", 0) == 0)
            name = val();
        else if (family.empty() && line.rfind("cpu family", 0) == 0)
            family = val();
        else if (model.empty() && line.rfind("model\t", 0) == 0)
            model = val();
    }
    return name + " (family " + family + " model " + model + ", " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " cores)";
}

void protoVarint(std::string& out, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        out += char(uint8_t(v) | 0x80);
    out += char(v);
}

void protoBytes(std::string& out, int field, const std::string& v)
{
    protoVarint(out, uint64_t(field) << 3 | 2);
    protoVarint(out, v.size());
    out += v;
}

// The same float32 tensors as an ONNX model of initializers only (written field by field:
// ModelProto.ir_version 1, opset_import 8, graph 7; GraphProto.initializer 5; TensorProto
// dims 1, data_type 2, name 8, raw_data 9), the data copied from the safetensors file.
bool writeOnnx(const std::string& path, const std::string& from, const std::vector<Spec>& specs, int64_t dataStart)
{
    std::ifstream in(from, std::ios::binary);
    std::string graph;
    std::vector<std::pair<std::string, int64_t>> heads;  // each initializer's bytes before its raw data
    for (const Spec& s : specs) {
        std::string t;
        for (int64_t d : s.shape) {
            protoVarint(t, 1 << 3);
            protoVarint(t, uint64_t(d));
        }
        protoVarint(t, 2 << 3);
        protoVarint(t, 1);  // FLOAT
        protoBytes(t, 8, s.name);
        const int64_t n = numel(s) * 4;
        protoVarint(t, 9 << 3 | 2);
        protoVarint(t, uint64_t(n));
        std::string head;
        protoVarint(head, 5 << 3 | 2);
        protoVarint(head, t.size() + uint64_t(n));
        heads.push_back({head + t, n});
    }
    uint64_t graphSize = 0;
    for (const auto& [h, n] : heads)
        graphSize += h.size() + uint64_t(n);
    std::string model;
    protoVarint(model, 1 << 3);
    protoVarint(model, 7);
    std::string opset;
    protoVarint(opset, 2 << 3);
    protoVarint(opset, 13);
    protoBytes(model, 8, opset);
    protoVarint(model, 7 << 3 | 2);
    protoVarint(model, graphSize);
    std::ofstream out(path, std::ios::binary);
    out.write(model.data(), std::streamsize(model.size()));
    in.seekg(dataStart);
    std::vector<char> buf(size_t(8) << 20);
    for (const auto& [h, n] : heads) {
        out.write(h.data(), std::streamsize(h.size()));
        for (int64_t left = n; left > 0;) {
            const auto k = std::streamsize(std::min<int64_t>(left, int64_t(buf.size())));
            in.read(buf.data(), k);
            out.write(buf.data(), k);
            left -= k;
        }
    }
    return bool(in) && bool(out);
}

// 3. Many tensors: twelve 64 MiB float32 tensors exported whole into every int8 format.
// An export that held every tensor's integers would peak near the sum of int8 (768 MiB of
// float gives 192 MiB); a streaming one near one float copy plus its integers.
void manyTensors(const std::string& cli, const fs::path& base)
{
    std::vector<Spec> specs;
    for (int i = 0; i < 12; ++i)
        specs.push_back({"model.layers." + std::to_string(i) + ".mlp.down_proj.weight", {4096, 4096}});
    const fs::path dir = base / "many";
    fs::create_directories(dir);
    const fs::path st = dir / "model.safetensors", onnx = base / "many.onnx";
    std::ofstream(dir / "config.json") << "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\"}";
    if (!writeShard(st.string(), specs, "F32", 4, pattern(size_t(64) << 20, 4))) {
        std::fprintf(stderr, "bench_bigmodel: cannot write %s\n", st.c_str());
        return;
    }
    uint64_t headerLen = 0;
    std::ifstream(st, std::ios::binary).read(reinterpret_cast<char*>(&headerLen), 8);
    if (!writeOnnx(onnx.string(), st.string(), specs, int64_t(8 + headerLen))) {
        std::fprintf(stderr, "bench_bigmodel: cannot write %s\n", onnx.c_str());
        return;
    }
    const double floatMb = double(numel(specs[0])) * 4 / 1048576.0, int8Mb = double(numel(specs[0])) * 12 / 1048576.0;
    struct Target {
        const char* label;
        fs::path model;
        std::vector<std::string> args;
    };
    const std::vector<Target> targets{
        {"HDF5", dir, {"--out", (base / "q.h5").string()}},
        {"safetensors int8", dir, {"--out", (base / "q.safetensors").string()}},
        {"npy folder", dir, {"--out", (base / "npy").string()}},
        {"compressed-tensors", dir, {"--out", (base / "ct").string(), "--format", "compressed-tensors", "--granularity", "channel"}},
        {"ONNX QDQ", onnx, {"--out", (base / "q.onnx").string()}},
    };
    for (const Target& t : targets) {
        std::vector<std::string> args{cli, "quantize", t.model.string()};
        for (const Spec& s : specs)
            args.insert(args.end(), {"--tensor", s.name});
        args.insert(args.end(), t.args.begin(), t.args.end());
        const Run q = runChild(args);
        std::printf("  quantize 12 x 64 MiB float32 -> %-18s exit %d, %.2f s wall, %.2f s CPU, peak RSS %.0f MB "
                    "(largest float copy %.0f MB; sum of int8 %.0f MB)\n",
                    t.label, q.code, q.seconds, q.cpuSeconds, double(q.maxRssKb) / 1024, floatMb, int8Mb);
        std::error_code ec;
        for (const char* out : {"q.h5", "q.safetensors", "npy", "ct", "q.onnx"})
            fs::remove_all(base / out, ec);
    }
    fs::remove_all(dir);
    fs::remove(onnx);
}

}  // namespace

int main(int argc, char** argv)
{
    const char* tmp = std::getenv("TMPDIR");
    const fs::path base = fs::path(argc > 1 ? argv[1] : (tmp ? tmp : "/tmp")) / ("ql_bigmodel_" + std::to_string(::getpid()));
    // QUANTLENS_BENCH_CLI: another build's quantlens-cli, for before/after figures.
    const char* otherCli = std::getenv("QUANTLENS_BENCH_CLI");
    const std::string cli = otherCli && *otherCli ? otherCli : QUANTLENS_CLI;
    const auto space = fs::space(base.parent_path());
    if (space.available < (uint64_t(3200) << 20)) {
        std::fprintf(stderr, "bench_bigmodel: %s has %.1f GB free, needs 3.2 GB\n", base.parent_path().c_str(),
                     double(space.available) / 1e9);
        return 1;
    }
    fs::create_directories(base);
    const bool manyOnly = std::getenv("QUANTLENS_BENCH_MANY_ONLY") != nullptr;
    std::printf("bench_bigmodel on %s, load average %.1f\n  cli: %s\n", cpuName().c_str(), [] {
        double l[1] = {0};
        return ::getloadavg(l, 1) == 1 ? l[0] : -1.0;
    }(), cli.c_str());

    if (manyOnly) {  // QUANTLENS_BENCH_MANY_ONLY=1: only the many-tensor exports
        manyTensors(cli, base);
        fs::remove_all(base);
        return 0;
    }
    // 1. TinyLlama shapes, bf16, 2 shards + index.
    const auto specs = tinyLlama();
    int64_t total = 0;
    for (const Spec& s : specs)
        total += numel(s);
    const size_t half = specs.size() / 2;
    const std::vector<Spec> a(specs.begin(), specs.begin() + long(half)), b(specs.begin() + long(half), specs.end());
    const fs::path llama = base / "tinyllama";
    fs::create_directories(llama);
    const auto pat = pattern(size_t(64) << 20, 2);
    const std::string s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors";
    if (!writeShard((llama / s1).string(), a, "BF16", 2, pat) || !writeShard((llama / s2).string(), b, "BF16", 2, pat)) {
        std::fprintf(stderr, "bench_bigmodel: cannot write the model under %s\n", base.c_str());
        fs::remove_all(base);
        return 1;
    }
    {
        std::ofstream idx(llama / "model.safetensors.index.json");
        idx << "{\"metadata\":{\"total_size\":" << total * 2 << "},\"weight_map\":{";
        for (size_t i = 0; i < specs.size(); ++i)
            idx << (i ? "," : "") << '"' << specs[i].name << "\":\"" << (i < half ? s1 : s2) << '"';
        idx << "}}";
    }
    const double llamaBytes = double(fs::file_size(llama / s1) + fs::file_size(llama / s2));
    int64_t largest = 0;
    for (const Spec& s : specs)
        largest = std::max(largest, numel(s));
    std::printf("  model: %lld parameters bf16, %.2f GB in 2 shards; largest tensor %lld values (%.0f MB as float32)\n",
                (long long)total, llamaBytes / 1e9, (long long)largest, double(largest) * 4 / 1e6);
    for (int i = 0; i < 2; ++i) {  // the first run may also read the file back from disk
        const Run r = runChild({cli, "inspect", "--json", llama.string()});
        std::printf("  inspect (run %d): exit %d, %.2f s wall, %.2f s CPU, peak RSS %.0f MB (file %.0f MB + one float copy %.0f MB = %.0f MB)\n",
                    i + 1, r.code, r.seconds, r.cpuSeconds, double(r.maxRssKb) / 1024, llamaBytes / 1048576.0,
                    double(largest) * 4 / 1048576.0, llamaBytes / 1048576.0 + double(largest) * 4 / 1048576.0);
    }
    // The window on the same model, when the GUI benchmarks were built beside this one.
    const fs::path window = fs::path(argv[0]).parent_path() / "bench_firstpicture";
    if (fs::exists(window))
        for (int i = 0; i < 2; ++i) {
            std::printf("  (run %d) ", i + 1);
            const Run r = runChild({window.string(), llama.string()}, /*keepStdout=*/true);
            std::printf("  window (run %d): exit %d, %.2f s wall, %.2f s CPU\n", i + 1, r.code, r.seconds, r.cpuSeconds);
        }
    else
        std::printf("  window: %s not built (needs the GUI), not measured\n", window.c_str());
    fs::remove_all(llama);

    // 2. One 768 MiB float32 tensor quantized to HDF5.
    const fs::path big = base / "big.safetensors";
    const std::vector<Spec> one{{"big.weight", {65536, 3072}}};
    if (!writeShard(big.string(), one, "F32", 4, pattern(size_t(64) << 20, 4))) {
        fs::remove_all(base);
        return 1;
    }
    const double bigBytes = double(fs::file_size(big));
    std::ofstream(base / "config.json") << "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\"}";
    // Every export format the CLI writes from a safetensors source (GGUF needs a GGUF
    // model and ONNX QDQ an ONNX model: not covered here).
    struct Target {
        const char* label;
        std::vector<std::string> args;
    };
    const std::vector<Target> targets{
        {"HDF5", {"--out", (base / "q.h5").string()}},
        {"safetensors int8", {"--out", (base / "q.safetensors").string()}},
        {"npy folder", {"--out", (base / "npy").string()}},
        {"compressed-tensors", {"--out", (base / "ct").string(), "--format", "compressed-tensors"}},
    };
    for (const Target& t : targets) {
        std::vector<std::string> args{cli, "quantize", big.string(), "--tensor", "big.weight"};
        args.insert(args.end(), t.args.begin(), t.args.end());
        const Run q = runChild(args);
        std::printf("  quantize 768 MiB float32 -> %-18s exit %d, %.2f s wall, %.2f s CPU, peak RSS %.0f MB "
                    "(tensor: %.0f MB as float32 + %.0f MB as int8)\n",
                    t.label, q.code, q.seconds, q.cpuSeconds, double(q.maxRssKb) / 1024, bigBytes / 1048576.0,
                    bigBytes / 4 / 1048576.0);
        std::error_code ec;
        fs::remove_all(base / "q.h5", ec);
        fs::remove_all(base / "q.safetensors", ec);
        fs::remove_all(base / "npy", ec);
        fs::remove_all(base / "ct", ec);
    }
    fs::remove(big);
    manyTensors(cli, base);
    fs::remove_all(base);
    return 0;
}

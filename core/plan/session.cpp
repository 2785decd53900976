#include "plan/session.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "io/atomicfile.h"

namespace quantlens {

namespace {

using json = nlohmann::ordered_json;

constexpr int64_t kMaxSessionBytes = int64_t(64) << 20;

Error badSession(const std::string& what) { return makeError("bad-session", "session: " + what); }

json specJson(const QuantSpec& s)
{
    json j;
    j["scheme"] = schemeName(s.scheme);
    j["granularity"] = granularityName(s);
    // calibName writes the shortest text that reads back to the same float/double, so a
    // dragged range survives the round trip bit for bit.
    j["calib"] = calibName(s);
    j["bits"] = s.bits;
    j["dtype"] = s.isUnsigned ? "uint8" : "int8";
    j["reduce_range"] = s.reduceRange;
    return j;
}

Result<std::string> stringField(const json& j, const char* key, const std::string& where)
{
    auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        return badSession(where + "." + key + " must be a string");
    return it->get<std::string>();
}

Result<QuantSpec> specFromJson(const json& j, const std::string& where)
{
    if (!j.is_object())
        return badSession(where + " must be an object");
    QuantSpec s;
    auto scheme = stringField(j, "scheme", where);
    if (!scheme)
        return scheme.error();
    auto sc = parseScheme(*scheme);
    if (!sc)
        return badSession(where + ".scheme: " + sc.error().message);
    s.scheme = *sc;
    auto gran = stringField(j, "granularity", where);
    if (!gran)
        return gran.error();
    if (Status st = parseGranularity(*gran, s); !st)
        return badSession(where + ".granularity: " + st.error().message);
    auto calib = stringField(j, "calib", where);
    if (!calib)
        return calib.error();
    if (Status st = parseCalib(*calib, s); !st)
        return badSession(where + ".calib: " + st.error().message);
    if (auto it = j.find("bits"); it != j.end()) {
        if (!it->is_number_integer() || it->get<int64_t>() < 2 || it->get<int64_t>() > 8)
            return badSession(where + ".bits must be an integer in 2..8");
        s.bits = int(it->get<int64_t>());
    }
    if (auto it = j.find("dtype"); it != j.end()) {
        if (!it->is_string() || (*it != "int8" && *it != "uint8"))
            return badSession(where + ".dtype must be \"int8\" or \"uint8\"");
        s.isUnsigned = *it == "uint8";
    }
    if (auto it = j.find("reduce_range"); it != j.end()) {
        if (!it->is_boolean())
            return badSession(where + ".reduce_range must be true or false");
        s.reduceRange = it->get<bool>();
    }
    return s;
}

json methodJson(const MethodSpec& m)
{
    json j;
    j["method"] = methodName(m);
    if (m.method == WeightMethod::Gptq) {
        j["dampening"] = m.gptq.dampening;
        j["block_size"] = m.gptq.blockSize;
    }
    return j;
}

Result<MethodSpec> methodFromJson(const json& j, const std::string& where)
{
    if (!j.is_object())
        return badSession(where + " must be an object");
    auto name = stringField(j, "method", where);
    if (!name)
        return name.error();
    auto m = parseMethod(*name);
    if (!m)
        return badSession(where + ".method: " + m.error().message);
    if (auto it = j.find("dampening"); it != j.end()) {
        if (!it->is_number() || !(it->get<double>() > 0) || it->get<double>() > 1)
            return badSession(where + ".dampening must be a number in (0, 1]");
        m->gptq.dampening = it->get<double>();
    }
    if (auto it = j.find("block_size"); it != j.end()) {
        if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 65536)
            return badSession(where + ".block_size must be an integer in 1..65536");
        m->gptq.blockSize = it->get<int64_t>();
    }
    return *m;
}

json calibrationJson(const CalibrationSource& c)
{
    json j = json::object();
    if (!c.tokens.empty())
        j["tokens"] = c.tokens;
    if (!c.tokensFile.empty())
        j["tokens_file"] = c.tokensFile;
    if (!c.textFile.empty())
        j["text_file"] = c.textFile;
    if (c.randomTokens > 0)
        j["random_tokens"] = c.randomTokens;
    return j;
}

Result<CalibrationSource> calibrationFromJson(const json& j)
{
    if (!j.is_object())
        return badSession("calibration must be an object");
    CalibrationSource c;
    if (auto it = j.find("tokens"); it != j.end()) {
        if (!it->is_array())
            return badSession("calibration.tokens must be an array of arrays of token ids");
        for (const json& seq : *it) {
            if (!seq.is_array())
                return badSession("calibration.tokens must be an array of arrays of token ids");
            std::vector<int64_t> ids;
            for (const json& v : seq) {
                if (!v.is_number_integer() || v.get<int64_t>() < 0)
                    return badSession("calibration.tokens must hold non-negative integer ids");
                ids.push_back(v.get<int64_t>());
            }
            c.tokens.push_back(std::move(ids));
        }
    }
    for (auto [key, field] : {std::pair{"tokens_file", &c.tokensFile}, std::pair{"text_file", &c.textFile}})
        if (auto it = j.find(key); it != j.end()) {
            if (!it->is_string())
                return badSession(std::string("calibration.") + key + " must be a string");
            *field = it->get<std::string>();
        }
    if (auto it = j.find("random_tokens"); it != j.end()) {
        if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > (int64_t(1) << 24))
            return badSession("calibration.random_tokens must be an integer in 1..16777216");
        c.randomTokens = it->get<int64_t>();
    }
    return c;
}

Result<std::set<std::string>> nameSet(const json& doc, const char* key)
{
    std::set<std::string> out;
    auto it = doc.find(key);
    if (it == doc.end())
        return out;
    if (!it->is_array())
        return badSession(std::string(key) + " must be an array of tensor names");
    for (const json& v : *it) {
        if (!v.is_string())
            return badSession(std::string(key) + " must be an array of tensor names");
        out.insert(v.get<std::string>());
    }
    return out;
}

}  // namespace

std::string modelFingerprint(const Model& m)
{
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](const void* p, size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) {
            h ^= b[i];
            h *= 1099511628211ull;
        }
    };
    for (const Tensor& t : m.tensors) {
        mix(t.name.data(), t.name.size() + 1);  // the terminator separates names
        const std::string_view dt = dtypeName(t.dtype);
        mix(dt.data(), dt.size());
        for (int64_t d : t.shape)
            mix(&d, sizeof d);
        const int64_t sep = -1;
        mix(&sep, sizeof sep);
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

std::string specToJsonText(const QuantSpec& s) { return specJson(s).dump(); }

std::string sessionToJson(const Session& s)
{
    json doc;
    doc["quantlens_session"] = Session::kVersion;
    doc["model"] = {{"path", s.modelPath}, {"tensors", s.modelTensors}, {"fingerprint", s.modelFingerprint}};
    doc["default"] = specJson(s.defaultSpec);
    doc["activations"] = {{"mode", activationModeName(s.activations.mode)}, {"reduce_range", s.activations.reduceRange}};
    if (!s.activationRanges.empty()) {
        json ranges = json::object();
        for (const auto& [name, r] : s.activationRanges)
            ranges[name] = {r.lo, r.hi};  // floats widen to doubles exactly and read back exactly
        doc["activations"]["ranges"] = std::move(ranges);
    }
    doc["quantize_vectors"] = s.quantizeVectors;
    json layers = json::object();
    for (const auto& [name, spec] : s.overrides)
        layers[name] = specJson(spec);
    doc["layers"] = std::move(layers);
    doc["method"] = methodJson(s.defaultMethod);
    json methods = json::object();
    for (const auto& [name, m] : s.methods)
        methods[name] = methodJson(m);
    doc["methods"] = std::move(methods);
    doc["calibration"] = calibrationJson(s.calibration);
    doc["export_selection"] = json(std::vector<std::string>(s.exportSelection.begin(), s.exportSelection.end()));
    doc["keep_float32"] = json(std::vector<std::string>(s.keepFloat.begin(), s.keepFloat.end()));
    return doc.dump(2) + "\n";
}

Result<Session> sessionFromJson(const std::string& text)
{
    json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded())
        return badSession("not valid JSON");
    if (!doc.is_object())
        return badSession("the top level must be an object");
    auto ver = doc.find("quantlens_session");
    if (ver == doc.end() || !ver->is_number_integer())
        return badSession("not a Quantlens session (no \"quantlens_session\" version)");
    if (ver->get<int64_t>() < 1 || ver->get<int64_t>() > Session::kVersion)
        return badSession("version " + std::to_string(ver->get<int64_t>()) + " is not supported (this build reads 1 to " +
                          std::to_string(Session::kVersion) + ")");

    Session s;
    if (auto m = doc.find("model"); m != doc.end()) {
        if (!m->is_object())
            return badSession("model must be an object");
        if (auto p = m->find("path"); p != m->end() && p->is_string())
            s.modelPath = p->get<std::string>();
        if (auto n = m->find("tensors"); n != m->end() && n->is_number_integer())
            s.modelTensors = n->get<int64_t>();
        if (auto f = m->find("fingerprint"); f != m->end() && f->is_string())
            s.modelFingerprint = f->get<std::string>();
    }
    if (auto d = doc.find("default"); d != doc.end()) {
        auto spec = specFromJson(*d, "default");
        if (!spec)
            return spec.error();
        s.defaultSpec = *spec;
    }
    if (auto a = doc.find("activations"); a != doc.end()) {
        if (!a->is_object())
            return badSession("activations must be an object");
        if (auto mo = a->find("mode"); mo != a->end()) {
            if (!mo->is_string())
                return badSession("activations.mode must be a string");
            auto mode = parseActivationMode(mo->get<std::string>());
            if (!mode)
                return badSession("activations.mode: " + mode.error().message);
            s.activations.mode = *mode;
        }
        if (auto rr = a->find("reduce_range"); rr != a->end()) {
            if (!rr->is_boolean())
                return badSession("activations.reduce_range must be true or false");
            s.activations.reduceRange = rr->get<bool>();
        }
        if (auto rg = a->find("ranges"); rg != a->end()) {
            if (!rg->is_object())
                return badSession("activations.ranges must be an object of tensor name -> [lo, hi]");
            for (auto it = rg->begin(); it != rg->end(); ++it) {
                const json& v = it.value();
                // Finite and within float, before narrowing to float.
                auto fits = [](const json& x) {
                    return x.is_number() && std::isfinite(x.get<double>()) &&
                           std::abs(x.get<double>()) <= double(std::numeric_limits<float>::max());
                };
                if (!v.is_array() || v.size() != 2 || !fits(v[0]) || !fits(v[1]) || v[0].get<double>() > v[1].get<double>())
                    return badSession("activations.ranges[\"" + it.key() + "\"] must be [lo, hi] with finite lo <= hi");
                s.activationRanges[it.key()] = {v[0].get<float>(), v[1].get<float>()};
            }
        }
    }
    if (auto qv = doc.find("quantize_vectors"); qv != doc.end()) {
        if (!qv->is_boolean())
            return badSession("quantize_vectors must be true or false");
        s.quantizeVectors = qv->get<bool>();
    }
    if (auto l = doc.find("layers"); l != doc.end()) {
        if (!l->is_object())
            return badSession("layers must be an object of tensor name -> spec");
        for (auto it = l->begin(); it != l->end(); ++it) {
            auto spec = specFromJson(it.value(), "layers[\"" + it.key() + "\"]");
            if (!spec)
                return spec.error();
            s.overrides[it.key()] = *spec;
        }
    }
    if (auto d = doc.find("method"); d != doc.end()) {
        auto m = methodFromJson(*d, "method");
        if (!m)
            return m.error();
        s.defaultMethod = *m;
    }
    if (auto l = doc.find("methods"); l != doc.end()) {
        if (!l->is_object())
            return badSession("methods must be an object of tensor name -> method");
        for (auto it = l->begin(); it != l->end(); ++it) {
            auto m = methodFromJson(it.value(), "methods[\"" + it.key() + "\"]");
            if (!m)
                return m.error();
            s.methods[it.key()] = *m;
        }
    }
    if (auto c = doc.find("calibration"); c != doc.end()) {
        auto cal = calibrationFromJson(*c);
        if (!cal)
            return cal.error();
        s.calibration = std::move(*cal);
    }
    auto sel = nameSet(doc, "export_selection");
    if (!sel)
        return sel.error();
    s.exportSelection = std::move(*sel);
    auto keep = nameSet(doc, "keep_float32");
    if (!keep)
        return keep.error();
    s.keepFloat = std::move(*keep);
    return s;
}

Status saveSession(const std::string& path, const Session& s)
{
    std::vector<std::string> inputs;
    if (!s.modelPath.empty())
        inputs.push_back(s.modelPath);
    auto f = AtomicFile::create(path, inputs);
    if (!f)
        return f.error();
    const std::string text = sessionToJson(s);
    if (Status st = f->write(text.data(), text.size()); !st)
        return st;
    return f->commit();
}

Result<Session> loadSession(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return makeError("open-failed", "cannot open session file", path);
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0 || size > kMaxSessionBytes)
        return makeError("too-large", "session file is larger than 64 MiB", path);
    in.seekg(0);
    std::string text(size_t(size), '\0');
    if (!in.read(text.data(), size))
        return makeError("read-failed", "cannot read session file", path);
    auto s = sessionFromJson(text);
    if (!s) {
        Error e = s.error();
        e.path = path;
        return e;
    }
    // A plan names its calibration files relative to itself, so plan and files move together.
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    for (std::string* f : {&s->calibration.tokensFile, &s->calibration.textFile})
        if (!f->empty() && std::filesystem::path(*f).is_relative())
            *f = (dir / *f).string();
    return s;
}

SessionApplied applySession(const Session& s, const Model& m)
{
    SessionApplied out;
    out.session = s;  // every model-wide setting as saved; the per-name parts are filtered below
    out.session.overrides.clear();
    out.session.methods.clear();
    out.session.activationRanges.clear();
    out.session.exportSelection.clear();
    out.session.keepFloat.clear();
    out.sameModel = s.modelFingerprint.empty() || s.modelFingerprint == modelFingerprint(m);
    std::set<std::string> missing;
    auto has = [&](const std::string& name) {
        if (m.find(name))
            return true;
        missing.insert(name);
        return false;
    };
    for (const auto& [name, spec] : s.overrides)
        if (has(name))
            out.session.overrides[name] = spec;
    for (const auto& [name, method] : s.methods)
        if (has(name))
            out.session.methods[name] = method;
    for (const auto& [name, range] : s.activationRanges)
        if (has(name))
            out.session.activationRanges[name] = range;
    for (const std::string& name : s.exportSelection)
        if (has(name))
            out.session.exportSelection.insert(name);
    for (const std::string& name : s.keepFloat)
        if (has(name))
            out.session.keepFloat.insert(name);
    out.missing.assign(missing.begin(), missing.end());
    return out;
}

}  // namespace quantlens

// HDF5 export: written by core, read back independently with the HDF5 C API (and with
// Quantlens's own HDF5 reader when it can open the file) — integers, scales, zero points,
// biases and every attribute of DESIGN.md's layout must come back identical.
#include <QTemporaryDir>
#include <QTest>

#include <hdf5.h>

#include <cmath>
#include <cstring>

#include "io/demomodel.h"
#include "io/exporter.h"
#include "io/h5export.h"
#include "io/hdf5reader.h"
#include "layers.h"
#include "testsupport.h"

using namespace quantlens;

namespace {

// Minimal read-back helpers over the C API; every call is checked.
struct H5Array {
    std::vector<hsize_t> dims;
    H5T_class_t cls = H5T_NO_CLASS;
    size_t size = 0;
    H5T_sign_t sign = H5T_SGN_ERROR;
    std::vector<double> values;  // everything we store fits a double exactly
};

bool readArray(hid_t file, const std::string& path, H5Array& out)
{
    const hid_t ds = H5Dopen2(file, path.c_str(), H5P_DEFAULT);
    if (ds < 0)
        return false;
    const hid_t type = H5Dget_type(ds);
    const hid_t space = H5Dget_space(ds);
    out.cls = H5Tget_class(type);
    out.size = H5Tget_size(type);
    out.sign = out.cls == H5T_INTEGER ? H5Tget_sign(type) : H5T_SGN_ERROR;
    const int rank = H5Sget_simple_extent_ndims(space);
    out.dims.assign(size_t(std::max(rank, 0)), 0);
    if (rank > 0)
        H5Sget_simple_extent_dims(space, out.dims.data(), nullptr);
    const hssize_t n = H5Sget_simple_extent_npoints(space);
    out.values.assign(size_t(n), 0.0);
    const herr_t r = n > 0 ? H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.values.data()) : 0;
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(ds);
    return r >= 0;
}

std::string stringAttr(hid_t obj, const char* name)
{
    const hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return "<missing>";
    const hid_t ft = H5Aget_type(a);
    std::string out = "<not a variable-length string>";
    if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0) {
        const hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5T_CSET_UTF8);
        char* s = nullptr;
        if (H5Aread(a, mt, &s) >= 0 && s) {
            out = s;
            H5free_memory(s);
        }
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return out;
}

double numberAttr(hid_t obj, const char* name)
{
    const hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return std::nan("");
    double v = std::nan("");
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0)
        v = std::nan("");
    H5Aclose(a);
    return v;
}

std::vector<double> asDoubles(const std::vector<int8_t>& q, bool isUnsigned)
{
    std::vector<double> v(q.size());
    for (size_t i = 0; i < q.size(); ++i)
        v[i] = isUnsigned ? double(uint8_t(q[i])) : double(q[i]);
    return v;
}

template <class T>
std::vector<double> asDoubles(const std::vector<T>& x)
{
    return std::vector<double>(x.begin(), x.end());
}

std::vector<hsize_t> asDims(const std::vector<int64_t>& s) { return std::vector<hsize_t>(s.begin(), s.end()); }

// Checks one /tensors/<name> group against what was exported.
void checkGroup(hid_t file, const Model& m, const ExportEntry& e)
{
    const QuantizedTensor& qt = e.quantized;
    const std::string g = "/tensors/" + hdf5GroupName(qt.name);
    const hid_t grp = H5Gopen2(file, g.c_str(), H5P_DEFAULT);
    QVERIFY2(grp >= 0, g.c_str());

    H5Array q;
    QVERIFY(readArray(grp, "q", q));
    QCOMPARE(q.cls, H5T_INTEGER);
    QCOMPARE(q.size, size_t(1));
    QCOMPARE(q.sign, qt.spec.isUnsigned ? H5T_SGN_NONE : H5T_SGN_2);
    QCOMPARE(q.dims, asDims(qt.shape));
    QVERIFY(q.values == asDoubles(qt.q, qt.spec.isUnsigned));

    auto sshape = scaleShape(qt);
    QVERIFY(sshape.ok());
    H5Array s, z;
    QVERIFY(readArray(grp, "scale", s));
    QVERIFY(readArray(grp, "zero_point", z));
    QCOMPARE(s.cls, H5T_FLOAT);
    QCOMPARE(s.size, size_t(4));
    QCOMPARE(z.cls, H5T_INTEGER);
    QCOMPARE(z.size, size_t(4));
    QCOMPARE(s.dims, asDims(*sshape));
    QCOMPARE(z.dims, asDims(*sshape));
    QVERIFY(s.values == asDoubles(qt.params.scale));
    QVERIFY(z.values == asDoubles(qt.params.zeroPoint));

    if (e.biasName.empty()) {
        QVERIFY(H5Lexists(grp, "bias", H5P_DEFAULT) <= 0);
    } else {
        H5Array b;
        QVERIFY(readArray(grp, "bias", b));
        QCOMPARE(b.cls, H5T_FLOAT);
        QCOMPARE(b.size, size_t(4));
        auto bv = m.find(e.biasName)->toFloat();
        QVERIFY(bv.ok());
        QVERIFY(b.values == asDoubles(*bv));
    }

    QCOMPARE(stringAttr(grp, "name"), qt.name);
    QCOMPARE(stringAttr(grp, "scheme"), schemeName(qt.spec.scheme));
    QCOMPARE(stringAttr(grp, "granularity"), storedGranularity(qt));
    QCOMPARE(stringAttr(grp, "calib"), calibName(qt.spec));
    QCOMPARE(stringAttr(grp, "source_dtype"), std::string("F32"));
    QCOMPARE(numberAttr(grp, "axis"), double(storedAxis(qt)));
    QCOMPARE(numberAttr(grp, "bits"), double(qt.spec.bits));
    QCOMPARE(numberAttr(grp, "qmin"), double(qt.params.qmin));
    QCOMPARE(numberAttr(grp, "qmax"), double(qt.params.qmax));
    QCOMPARE(numberAttr(grp, "group_size"), double(qt.params.groupSize));
    QCOMPARE(numberAttr(grp, "range_lo"), double(qt.params.rangeLo));
    QCOMPARE(numberAttr(grp, "range_hi"), double(qt.params.rangeHi));
    QCOMPARE(numberAttr(grp, "mse"), e.metrics.mse);
    QCOMPARE(numberAttr(grp, "sqnr_db"), e.metrics.sqnrDb);
    H5Gclose(grp);
}

std::vector<ExportEntry> quantizeAll(const Model& m, const std::vector<std::string>& names, const QuantSpec& spec)
{
    std::vector<ExportEntry> out;
    for (const std::string& n : names) {
        auto e = quantizeForExport(m, n, spec);
        if (!e)
            qFatal("quantizeForExport(%s): %s", n.c_str(), e.error().oneLine().c_str());
        out.push_back(std::move(*e));
    }
    return out;
}

std::vector<std::string> linearWeights(const Model& m)
{
    std::vector<std::string> out;
    for (const LinearLayer& l : findLinearLayers(m))
        out.push_back(l.weight->name);
    return out;
}

}  // namespace

class TestExportHdf5 : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

    void roundTrip_data()
    {
        QTest::addColumn<QString>("scheme");
        QTest::addColumn<QString>("granularity");
        QTest::addColumn<bool>("isUnsigned");
        QTest::newRow("seed, per tensor") << QStringLiteral("seed") << QStringLiteral("tensor") << false;
        QTest::newRow("torch-symmetric, per channel") << QStringLiteral("torch-symmetric") << QStringLiteral("channel") << false;
        QTest::newRow("torch-affine uint8, per channel") << QStringLiteral("torch-affine") << QStringLiteral("channel") << true;
        QTest::newRow("narrow-symmetric, groups of 16") << QStringLiteral("narrow-symmetric") << QStringLiteral("group:16") << false;
        QTest::newRow("q8_0 blocks of 32") << QStringLiteral("q8_0") << QStringLiteral("tensor") << false;
    }
    void roundTrip()
    {
        QFETCH(QString, scheme);
        QFETCH(QString, granularity);
        QFETCH(bool, isUnsigned);
        QuantSpec spec;
        auto sc = parseScheme(scheme.toStdString());
        QVERIFY(sc.ok());
        spec.scheme = *sc;
        QVERIFY(parseGranularity(granularity.toStdString(), spec).ok());
        spec.isUnsigned = isUnsigned;

        const Model m = makeDemoModel(1, 64);
        std::vector<std::string> names = linearWeights(m);
        QCOMPARE(names.size(), size_t(6));
        if (spec.granularity == Granularity::PerTensor)
            names.push_back("distilbert.embeddings.LayerNorm.weight");  // 1-D: per tensor is allowed
        const auto entries = quantizeAll(m, names, spec);

        QTemporaryDir tmp;
        ExportOptions o;
        o.format = ExportFormat::Hdf5;
        o.outPath = tmp.filePath(QStringLiteral("demo.h5")).toStdString();
        auto r = exportModel(m, entries, o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());

        const hid_t f = H5Fopen(o.outPath.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
        QVERIFY(f >= 0);
        QCOMPARE(stringAttr(f, "format"), std::string("quantlens-int8"));
        QCOMPARE(numberAttr(f, "format_version"), 1.0);
        QCOMPARE(stringAttr(f, "source"), std::string("(built-in demo)"));
        QCOMPARE(stringAttr(f, "source_format"), std::string("demo"));
        H5G_info_t info{};
        const hid_t tg = H5Gopen2(f, "/tensors", H5P_DEFAULT);
        QVERIFY(tg >= 0);
        QVERIFY(H5Gget_info(tg, &info) >= 0);
        QCOMPARE(info.nlinks, hsize_t(entries.size()));
        H5Gclose(tg);
        for (const ExportEntry& e : entries) {
            checkGroup(f, m, e);
            if (QTest::currentTestFailed())
                break;
        }
        H5Fclose(f);

        // The same file through Quantlens's own reader, once it opens plain HDF5 files.
        auto back = readHdf5(o.outPath);
        if (!back.ok()) {
            qInfo("readHdf5 cannot open the export yet (%s); checked with the C API only", back.error().oneLine().c_str());
            return;
        }
        auto dataset = [&](const ExportEntry& e, const char* leaf) -> const Tensor* {
            const std::string suffix = hdf5GroupName(e.quantized.name) + "/" + leaf;
            for (const Tensor& c : back->tensors)
                if (c.name.size() >= suffix.size() && c.name.compare(c.name.size() - suffix.size(), suffix.size(), suffix) == 0)
                    return &c;
            return nullptr;
        };
        for (const ExportEntry& e : entries) {
            const QuantizedTensor& qt = e.quantized;
            const Tensor* q = dataset(e, "q");
            const Tensor* s = dataset(e, "scale");
            const Tensor* z = dataset(e, "zero_point");
            QVERIFY2(q && s && z, qt.name.c_str());
            QCOMPARE(q->dtype, qt.spec.isUnsigned ? DType::U8 : DType::I8);
            QCOMPARE(q->shape, qt.shape);
            QCOMPARE(s->dtype, DType::F32);
            QCOMPARE(z->dtype, DType::I32);
            QCOMPARE(s->shape, *scaleShape(qt));
            auto qv = q->toFloat();
            auto sv = s->toFloat();
            auto zv = z->toFloat();
            QVERIFY(qv.ok() && sv.ok() && zv.ok());
            for (size_t i = 0; i < qv->size(); ++i)
                QCOMPARE(double((*qv)[i]), double(qt.qAt(int64_t(i))));
            QVERIFY(*sv == qt.params.scale);
            for (size_t i = 0; i < zv->size(); ++i)
                QCOMPARE(double((*zv)[i]), double(qt.params.zeroPoint[i]));
        }
    }

    void kerasNamesAndInOutLayout()
    {
        // A Keras Dense kernel is [in, out]: per-channel scales run along axis 1, and its
        // "/"-separated name stays one group, percent-encoded.
        Model m;
        m.format = "keras-h5";
        m.files = {"(test)"};
        std::vector<float> k(8 * 4), b(4), odd(5);
        for (size_t i = 0; i < k.size(); ++i)
            k[i] = std::sin(float(i)) * 0.3f;
        for (size_t i = 0; i < b.size(); ++i)
            b[i] = 0.01f * float(i);
        for (size_t i = 0; i < odd.size(); ++i)
            odd[i] = float(i) - 2.0f;
        Tensor kernel = makeFloatTensor("dense_1/dense_1/kernel:0", {8, 4}, k);
        kernel.layout = Layout::InOut;
        m.tensors.push_back(kernel);
        m.tensors.push_back(makeFloatTensor("dense_1/dense_1/bias:0", {4}, b));
        m.tensors.push_back(makeFloatTensor("100%/odd", {5}, odd));

        QuantSpec chan;
        chan.scheme = Scheme::TorchSymmetric;
        chan.granularity = Granularity::PerChannel;
        auto e1 = quantizeForExport(m, "dense_1/dense_1/kernel:0", chan);
        QVERIFY2(e1.ok(), e1.ok() ? "" : e1.error().oneLine().c_str());
        QCOMPARE(e1->biasName, std::string("dense_1/dense_1/bias:0"));
        QCOMPARE(storedAxis(e1->quantized), 1);
        QCOMPARE(*scaleShape(e1->quantized), (std::vector<int64_t>{4}));
        // Per-channel needs rank >= 2.
        auto bad = quantizeForExport(m, "100%/odd", chan);
        QVERIFY(!bad.ok());
        QCOMPARE(bad.error().code, std::string("bad-granularity"));
        auto e2 = quantizeForExport(m, "100%/odd", QuantSpec{});
        QVERIFY(e2.ok());
        QCOMPARE(hdf5GroupName("dense_1/dense_1/kernel:0"), std::string("dense_1%2Fdense_1%2Fkernel:0"));
        QCOMPARE(hdf5GroupName("100%/odd"), std::string("100%25%2Fodd"));
        QCOMPARE(hdf5GroupName("."), std::string("%2E"));

        std::vector<ExportEntry> entries;
        entries.push_back(std::move(*e1));
        entries.push_back(std::move(*e2));
        QTemporaryDir tmp;
        ExportOptions o;
        o.format = ExportFormat::Hdf5;
        o.outPath = tmp.filePath(QStringLiteral("keras.h5")).toStdString();
        auto r = exportModel(m, entries, o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        const hid_t f = H5Fopen(o.outPath.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
        QVERIFY(f >= 0);
        QCOMPARE(stringAttr(f, "source_format"), std::string("keras-h5"));
        for (const ExportEntry& e : entries)
            checkGroup(f, m, e);
        H5Fclose(f);
    }

    void staticInputAttributes()
    {
        // A static plan's layer input (tasks/exportplan attaches it): its uint8 scale, zero
        // point and range as attributes of the layer's group; a layer without one has none.
        const Model m = makeDemoModel(1, 32);
        const std::vector<std::string> names = linearWeights(m);
        auto entries = quantizeAll(m, {names[0], names[1]}, QuantSpec{});
        entries[0].staticInput = StaticInputParams{-1.25f, 3.5f, 0.0186f, 67, true};
        QTemporaryDir tmp;
        ExportOptions o;
        o.format = ExportFormat::Hdf5;
        o.outPath = tmp.filePath(QStringLiteral("static.h5")).toStdString();
        auto r = exportModel(m, entries, o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().oneLine().c_str());
        const hid_t f = H5Fopen(o.outPath.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
        QVERIFY(f >= 0);
        const hid_t g0 = H5Gopen2(f, ("/tensors/" + hdf5GroupName(names[0])).c_str(), H5P_DEFAULT);
        const hid_t g1 = H5Gopen2(f, ("/tensors/" + hdf5GroupName(names[1])).c_str(), H5P_DEFAULT);
        QVERIFY(g0 >= 0 && g1 >= 0);
        QCOMPARE(float(numberAttr(g0, "input_scale")), 0.0186f);
        QCOMPARE(numberAttr(g0, "input_zero_point"), 67.0);
        QCOMPARE(float(numberAttr(g0, "input_range_lo")), -1.25f);
        QCOMPARE(float(numberAttr(g0, "input_range_hi")), 3.5f);
        QCOMPARE(numberAttr(g0, "input_reduce_range"), 1.0);
        QVERIFY(H5Aexists(g1, "input_scale") == 0);
        H5Gclose(g0);
        H5Gclose(g1);
        H5Fclose(f);
    }

    void duplicateEntriesFailCleanly()
    {
        const Model m = makeDemoModel(1, 32);
        const std::string n = linearWeights(m).front();
        auto entries = quantizeAll(m, {n, n}, QuantSpec{});
        QTemporaryDir tmp;
        ExportOptions o;
        o.format = ExportFormat::Hdf5;
        o.outPath = tmp.filePath(QStringLiteral("dup.h5")).toStdString();
        auto r = exportModel(m, entries, o);
        QVERIFY(!r.ok());
        QVERIFY(!QFileInfo::exists(QString::fromStdString(o.outPath)));
        QCOMPARE(QDir(tmp.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot).size(), 0);
    }
};

QTEST_GUILESS_MAIN(TestExportHdf5)
#include "tst_exporthdf5.moc"

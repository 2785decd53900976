// 64-bit safety: a sparse file over 4 GiB whose last tensor lies beyond the 4 GiB mark
// must be read correctly (offsets and sizes never pass through 32-bit types).
#include <QTemporaryDir>
#include <QTest>

#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>

#include "model.h"

using namespace quantlens;

class TestLargeFile : public QObject {
    Q_OBJECT
private slots:
    void safetensorsTensorBeyond4GiB()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const std::string path = dir.filePath(QStringLiteral("big.safetensors")).toStdString();
        const int64_t bigBytes = (int64_t(1) << 32) + 4096;  // a U8 tensor just over 4 GiB
        const float tail[4] = {1.5f, -2.25f, 3.0f, 1e-3f};
        std::string header = "{\"big\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(bigBytes) +
                             "],\"data_offsets\":[0," + std::to_string(bigBytes) + "]},\"tail\":{\"dtype\":\"F32\",\"shape\":[4],"
                             "\"data_offsets\":[" + std::to_string(bigBytes) + "," + std::to_string(bigBytes + 16) + "]}}";
        while (header.size() % 8)
            header += ' ';
        const uint64_t n = header.size();
        const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
        QVERIFY(fd >= 0);
        const int64_t dataStart = 8 + int64_t(n);
        bool ok = ::pwrite(fd, &n, 8, 0) == 8 && ::pwrite(fd, header.data(), n, 8) == ssize_t(n) &&
                  ::pwrite(fd, tail, 16, dataStart + bigBytes) == 16;  // the rest stays a hole
        ::close(fd);
        if (!ok)
            QSKIP("this filesystem cannot hold a sparse 4 GiB file");

        auto m = openModel(path);
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
        const Tensor* t = m->find("tail");
        QVERIFY(t);
        QCOMPARE(t->numel(), int64_t(4));
        auto v = t->toFloat();
        QVERIFY(v.ok());
        for (int i = 0; i < 4; ++i)
            QCOMPARE((*v)[size_t(i)], tail[i]);
        QCOMPARE(m->find("big")->numel(), bigBytes);
    }
    void ggufTensorBeyond4GiB()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const std::string path = dir.filePath(QStringLiteral("big.gguf")).toStdString();
        const uint64_t bigElems = (uint64_t(1) << 32) + 32;  // an I8 tensor just over 4 GiB
        const float tail[4] = {0.5f, -7.0f, 2.0f, 1e-6f};
        std::string h;
        auto u32 = [&h](uint32_t v) { h.append(reinterpret_cast<const char*>(&v), 4); };
        auto u64 = [&h](uint64_t v) { h.append(reinterpret_cast<const char*>(&v), 8); };
        auto str = [&](const std::string& v) { u64(v.size()); h += v; };
        h += "GGUF";
        u32(3);  // version
        u64(2);  // tensors
        u64(0);  // key/values
        str("big");
        u32(1);
        u64(bigElems);
        u32(24);  // GGML_TYPE_I8
        u64(0);
        str("tail");
        u32(1);
        u64(4);
        u32(0);  // GGML_TYPE_F32
        u64(bigElems);  // a multiple of the default alignment (32)
        while (h.size() % 32)
            h += '\0';
        const int64_t dataStart = int64_t(h.size());
        const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
        QVERIFY(fd >= 0);
        const bool ok = ::pwrite(fd, h.data(), h.size(), 0) == ssize_t(h.size()) &&
                        ::pwrite(fd, tail, 16, dataStart + int64_t(bigElems)) == 16;
        ::close(fd);
        if (!ok)
            QSKIP("this filesystem cannot hold a sparse 4 GiB file");

        auto m = openModel(path);
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().oneLine().c_str());
        QCOMPARE(m->format, std::string("gguf"));
        const Tensor* t = m->find("tail");
        QVERIFY(t);
        auto v = t->toFloat();
        QVERIFY(v.ok());
        for (int i = 0; i < 4; ++i)
            QCOMPARE((*v)[size_t(i)], tail[i]);
        QCOMPARE(m->find("big")->numel(), int64_t(bigElems));
    }
};

QTEST_GUILESS_MAIN(TestLargeFile)
#include "tst_largefile.moc"

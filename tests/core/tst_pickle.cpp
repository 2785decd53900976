// The restricted unpickler on hand-assembled pickles: what it builds, and what it refuses.
// Opcode bytes follow CPython's Lib/pickle.py; the expected renderings are what Python's
// pickle.loads gives for the same bytes (checked by hand with pickletools).
#include <QtTest>

#include <string>

#include "io/pickle.h"

using namespace quantlens;
using namespace quantlens::pickle;

namespace {

const AllowedGlobal kAllowed[] = {
    {"collections", "OrderedDict", GlobalKind::Dict},
    {"builtins", "set", GlobalKind::Set},
    {"torch._utils", "_rebuild_tensor_v2", GlobalKind::Opaque},
};

Options options()
{
    Options o;
    o.allowed = kAllowed;
    return o;
}

std::span<const std::byte> bytesOf(const QByteArray& b)
{
    return {reinterpret_cast<const std::byte*>(b.constData()), size_t(b.size())};
}

// Python-like text of a node; a node already being printed is shown as "..." (as repr does).
std::string render(const Pickle& p, NodeId id, std::vector<bool>& open)
{
    const Node& n = p.at(id);
    if (open[id])
        return "...";
    auto list = [&](const char* a, const char* b, bool pairs) {
        open[id] = true;
        std::string s = a;
        for (size_t i = 0; i < n.items.size(); ++i) {
            if (i)
                s += pairs && i % 2 ? ": " : ", ";
            s += render(p, n.items[i], open);
        }
        open[id] = false;
        if (n.kind == Kind::Tuple && n.items.size() == 1)
            s += ",";
        return s + b;
    };
    switch (n.kind) {
    case Kind::String: return "'" + n.text + "'";
    case Kind::Bytes: return "b'" + n.text + "'";
    case Kind::List: return list("[", "]", false);
    case Kind::Tuple: return list("(", ")", false);
    case Kind::Dict: return list("{", "}", true);
    case Kind::Set: return list("set(", ")", false);
    case Kind::Global: return "<" + n.text + ">";
    case Kind::Call: {
        open[id] = true;
        std::string s = render(p, n.callee, open) + render(p, n.args, open);
        open[id] = false;
        return s;
    }
    case Kind::PersistentId: return "pid" + render(p, n.args, open);
    default: return scalarText(n);
    }
}

std::string render(const Pickle& p)
{
    std::vector<bool> open(p.nodes.size(), false);
    return render(p, p.root, open);
}

// Literal bytes including NULs; sizeof counts them (minus the terminator).
#define PK(s) QByteArray(s, int(sizeof(s) - 1))

}  // namespace

class TestPickle : public QObject {
    Q_OBJECT
private slots:
    void parses_data();
    void parses();
    void refuses_data();
    void refuses();
    void memoSharesNodes();
    void consecutivePicklesReportTheirEnd();
    void cyclicListBuildsWithoutWalking();
    void nodeBudgetStopsTinyOpcodeFloods();
    void itemBudgetStopsRepeatedCopies();
};

void TestPickle::parses_data()
{
    QTest::addColumn<QByteArray>("pickle");
    QTest::addColumn<QString>("expected");
    QTest::newRow("none") << PK("\x80\x02N.") << "None";
    QTest::newRow("bools_in_tuple2") << PK("\x80\x02\x88\x89\x86.") << "(True, False)";
    QTest::newRow("binint1_binint2_binint_tuple3") << PK("\x80\x02K\x07M\x00\x01J\xff\xff\xff\xff\x87.") << "(7, 256, -1)";
    QTest::newRow("long1_negative") << PK("\x80\x02\x8a\x02\x00\xff.") << "-256";
    QTest::newRow("long1_zero_length_is_zero") << PK("\x80\x02\x8a\x00.") << "0";
    QTest::newRow("long1_big_is_hex") << PK("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.")
                                      << "0x1950a86a20f9469cfc6c";
    QTest::newRow("binfloat_big_endian") << PK("\x80\x02G?\xb9\x99\x99\x99\x99\x99\x9a.") << "0.1";
    QTest::newRow("short_binunicode") << PK("\x80\x02\x8c\x03" "abc.") << "'abc'";
    QTest::newRow("binunicode8") << PK("\x80\x04\x8d\x02\x00\x00\x00\x00\x00\x00\x00hi.") << "'hi'";
    QTest::newRow("short_binbytes") << PK("\x80\x03" "C\x02" "ab.") << "b'ab'";
    QTest::newRow("frame_is_skipped") << PK("\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00N.") << "None";
    QTest::newRow("empty_containers") << PK("\x80\x02(]})t.") << "([], {}, ())";
    QTest::newRow("tuple1") << PK("\x80\x02K\x01\x85.") << "(1,)";
    QTest::newRow("list_appends") << PK("\x80\x02](K\x01K\x02" "e.") << "[1, 2]";
    QTest::newRow("list_append") << PK("\x80\x02]K\x01" "a.") << "[1]";
    QTest::newRow("dict_setitem") << PK("\x80\x02}X\x01\x00\x00\x00" "aK\x01s.") << "{'a': 1}";
    QTest::newRow("dict_setitems") << PK("\x80\x02}(\x8c\x01" "aK\x01\x8c\x01" "bK\x02u.") << "{'a': 1, 'b': 2}";
    QTest::newRow("dict_opcode_from_mark") << PK("\x80\x02(\x8c\x01" "aK\x01" "d.") << "{'a': 1}";
    QTest::newRow("pop_and_dup") << PK("\x80\x02K\x01K\x02" "0\x32\x86.") << "(1, 1)";
    QTest::newRow("pop_mark") << PK("\x80\x02K\x09(K\x01K\x02" "1.") << "9";
    QTest::newRow("ordereddict_reduce_is_dict")
        << PK("\x80\x02\x63\x63ollections\nOrderedDict\n)R(\x8c\x01kK\x05u.") << "{'k': 5}";
    QTest::newRow("ordereddict_from_pairs")
        << PK("\x80\x02\x63\x63ollections\nOrderedDict\n]((\x8c\x01kK\x05te\x85R.") << "{'k': 5}";
    QTest::newRow("set_from_list") << PK("\x80\x02\x63\x62uiltins\nset\n](K\x01K\x02" "e\x85R.") << "set(1, 2)";
    QTest::newRow("empty_set_additems") << PK("\x80\x04\x8f(K\x01\x90.") << "set(1)";
    QTest::newRow("stack_global_allowed")
        << PK("\x80\x04\x8c\x0ctorch._utils\x94\x8c\x12_rebuild_tensor_v2\x94\x93)R.")
        << "<torch._utils._rebuild_tensor_v2>()";
    QTest::newRow("binpersid") << PK("\x80\x02(\x8c\x07storageK\x01tQ.") << "pid('storage', 1)";
    QTest::newRow("build_keeps_object") << PK("\x80\x02}}b.") << "{}";
}

void TestPickle::parses()
{
    QFETCH(QByteArray, pickle);
    QFETCH(QString, expected);
    auto p = unpickle(bytesOf(pickle), options());
    QVERIFY2(p.ok(), p.ok() ? "" : p.error().message.c_str());
    QCOMPARE(QString::fromStdString(render(*p)), expected);
    QCOMPARE(p->end, size_t(pickle.size()));
}

void TestPickle::refuses_data()
{
    QTest::addColumn<QByteArray>("pickle");
    QTest::addColumn<QString>("code");
    QTest::addColumn<QString>("message");
    QTest::newRow("global_posix_system") << PK("\x80\x02\x63posix\nsystem\n\x8c\x02lsR.") << "unsafe-pickle"
                                         << "pickle global 'posix.system' is not allowed (state_dict readers never execute code)";
    QTest::newRow("stack_global_builtins_eval") << PK("\x80\x04\x8c\x08\x62uiltins\x8c\x04\x65val\x93.")
                                                << "unsafe-pickle" << "pickle global 'builtins.eval' is not allowed";
    QTest::newRow("near_miss_module_name") << PK("\x80\x02\x63torch._utils \n_rebuild_tensor_v2\n.")
                                           << "unsafe-pickle" << "'torch._utils ._rebuild_tensor_v2'";
    QTest::newRow("inst_opcode") << PK("\x80\x02(iposix\nsystem\n.") << "unsafe-pickle" << "INST";
    QTest::newRow("ext_registry") << PK("\x80\x02\x82\x01.") << "unsafe-pickle" << "extension registry";
    QTest::newRow("reduce_on_non_global") << PK("\x80\x02K\x01)R.") << "bad-pickle" << "not an allowed global";
    QTest::newRow("setitem_on_list") << PK("\x80\x02]K\x01K\x02s.") << "bad-pickle" << "not a dict";
    QTest::newRow("append_on_dict") << PK("\x80\x02}K\x01" "a.") << "bad-pickle" << "not a list";
    QTest::newRow("unknown_opcode") << PK("\x80\x02\xff.") << "bad-pickle" << "unsupported pickle opcode 0xff";
    QTest::newRow("protocol_6") << PK("\x80\x06N.") << "bad-pickle" << "unsupported pickle protocol 6";
    QTest::newRow("no_stop") << PK("\x80\x02N") << "truncated" << "without STOP";
    QTest::newRow("empty_input") << QByteArray() << "truncated" << "without STOP";
    QTest::newRow("string_past_end") << PK("\x80\x02X\xff\xff\xff\x7f\x61.") << "truncated" << "claims 2147483647 bytes";
    QTest::newRow("binunicode8_huge") << PK("\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff.") << "truncated" << "claims";
    QTest::newRow("cut_inside_binint") << PK("\x80\x02J\x01\x02") << "truncated" << "inside an integer";
    QTest::newRow("memo_get_never_stored") << PK("\x80\x02h\x03.") << "bad-pickle" << "memo index 3 was never stored";
    QTest::newRow("long_binget_huge") << PK("\x80\x02j\xff\xff\xff\xff.") << "bad-pickle" << "memo index 4294967295 was never stored";
    QTest::newRow("long_binput_huge") << PK("\x80\x02]r\xff\xff\xff\xff.") << "bad-pickle" << "larger than the pickle could hold";
    QTest::newRow("stack_underflow_stop") << PK("\x80\x02.") << "bad-pickle" << "underflow";
    QTest::newRow("tuple_below_mark") << PK("\x80\x02K\x01(\x85.") << "bad-pickle" << "underflow";
    QTest::newRow("tuple_without_mark") << PK("\x80\x02K\x01t.") << "bad-pickle" << "needs a MARK";
    QTest::newRow("odd_setitems") << PK("\x80\x02}(K\x01u.") << "bad-pickle" << "odd number";
    QTest::newRow("long4_negative_length") << PK("\x80\x02\x8b\xff\xff\xff\xff.") << "bad-pickle" << "negative length";
    QTest::newRow("frame_past_end") << PK("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x40N.") << "truncated" << "FRAME";
    QTest::newRow("global_without_newline") << PK("\x80\x02\x63posix") << "truncated" << "newline";
    QTest::newRow("out_of_band_buffer") << PK("\x80\x05\x97.") << "bad-pickle" << "out-of-band";
    QTest::newRow("newobj_ex_kwargs")
        << PK("\x80\x04\x8c\x0b\x63ollections\x8c\x0bOrderedDict\x93)}K\x01K\x02s\x92.") << "bad-pickle" << "keyword";
    QByteArray marks = PK("\x80\x02");
    marks += QByteArray(100000, '(');
    QTest::newRow("marks_100000_deep") << marks << "bad-pickle" << "deeper than 1000";
    QByteArray lists = PK("\x80\x02");
    lists += QByteArray(100001, ']');
    QTest::newRow("stack_100001_deep") << lists << "bad-pickle" << "stack deeper than 100000";
}

void TestPickle::refuses()
{
    QFETCH(QByteArray, pickle);
    QFETCH(QString, code);
    QFETCH(QString, message);
    auto p = unpickle(bytesOf(pickle), options());
    QVERIFY(!p.ok());
    QCOMPARE(QString::fromStdString(p.error().code), code);
    QVERIFY2(QString::fromStdString(p.error().message).contains(message), p.error().message.c_str());
    QVERIFY(p.error().offset >= 0 && p.error().offset <= pickle.size());
}

void TestPickle::memoSharesNodes()
{
    // ([1], <memo 0>): both tuple items are the same list object, as in Python.
    const QByteArray pk = PK("\x80\x02]q\x00K\x01\x61h\x00\x86.");
    auto p = unpickle(bytesOf(pk), options());
    QVERIFY(p.ok());
    const Node& t = p->at(p->root);
    QCOMPARE(t.items.size(), size_t(2));
    QCOMPARE(t.items[0], t.items[1]);
    // MEMOIZE numbers entries by count, so a later BINGET 1 finds the second one.
    const QByteArray pk4 = PK("\x80\x04K\x05\x94K\x06\x94h\x01h\x00\x86.");
    auto q = unpickle(bytesOf(pk4), options());
    QVERIFY(q.ok());
    QCOMPARE(QString::fromStdString(render(*q)), QStringLiteral("(6, 5)"));
}

void TestPickle::consecutivePicklesReportTheirEnd()
{
    const QByteArray two = PK("\x80\x02K\x01.\x80\x02K\x02.");
    auto first = unpickle(bytesOf(two), options());
    QVERIFY(first.ok());
    QCOMPARE(first->end, size_t(5));
    auto second = unpickle(bytesOf(two).subspan(first->end), options());
    QVERIFY(second.ok());
    QCOMPARE(QString::fromStdString(render(*second)), QStringLiteral("2"));
}

void TestPickle::cyclicListBuildsWithoutWalking()
{
    // l = []; l.append(l): the graph holds the cycle; only a walker could loop on it.
    const QByteArray pk = PK("\x80\x02]q\x00h\x00\x61.");
    auto p = unpickle(bytesOf(pk), options());
    QVERIFY(p.ok());
    const Node& l = p->at(p->root);
    QCOMPARE(l.items.size(), size_t(1));
    QCOMPARE(l.items[0], p->root);
    QCOMPARE(QString::fromStdString(render(*p)), QStringLiteral("[...]"));
}

void TestPickle::nodeBudgetStopsTinyOpcodeFloods()
{
    // NONE, POP costs 2 bytes per node; the cap, not the input size, must stop it.
    QByteArray pk = PK("\x80\x02");
    for (int i = 0; i < 200; ++i)
        pk += "N0";
    pk += "N.";
    Options o = options();
    o.maxNodes = 100;
    auto p = unpickle(bytesOf(pk), o);
    QVERIFY(!p.ok());
    QVERIFY2(QString::fromStdString(p.error().message).contains(QStringLiteral("more than 100 values")), p.error().message.c_str());
    QVERIFY(unpickle(bytesOf(pk), options()).ok());
}

void TestPickle::itemBudgetStopsRepeatedCopies()
{
    // s = set; l = [0] * 1000; then set(l) again and again: each call copies 1000 items
    // for 6 bytes of pickle. Python would do the same copying; we stop at 2x the input.
    QByteArray pk = PK("\x80\x02\x63\x62uiltins\nset\nq\x00](");
    for (int i = 0; i < 1000; ++i)
        pk += PK("K\x00");
    pk += PK("eq\x01");
    for (int i = 0; i < 100; ++i)
        pk += PK("h\x00h\x01\x85R0");
    pk += PK("N.");
    auto p = unpickle(bytesOf(pk), options());
    QVERIFY(!p.ok());
    QVERIFY2(QString::fromStdString(p.error().message).contains(QStringLiteral("container items")), p.error().message.c_str());
}

QTEST_APPLESS_MAIN(TestPickle)
#include "tst_pickle.moc"

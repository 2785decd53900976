#pragma once
// Runs the built quantlens-cli (QUANTLENS_CLI) the way a user's shell would, for the CLI
// tests: exit code (-1 if it crashed or never started), stdout and stderr kept apart.
#include <QByteArray>
#include <QProcess>
#include <QProcessEnvironment>
#include <QString>
#include <QStringList>

namespace quantlens::test {

struct CliRun {
    int code = -1;
    bool crashed = true;
    QByteArray out, err;
};

struct CliOptions {
    QString cwd;  // working directory; empty: the test's
    QString isa;  // QUANTLENS_ISA for the child; empty: inherited
    QString program;  // empty: QUANTLENS_CLI
};

inline CliRun runCli(const QStringList& args, const CliOptions& o = {})
{
    QProcess p;
    if (!o.cwd.isEmpty())
        p.setWorkingDirectory(o.cwd);
    if (!o.isa.isEmpty()) {
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert(QStringLiteral("QUANTLENS_ISA"), o.isa);
        p.setProcessEnvironment(env);
    }
    p.start(o.program.isEmpty() ? QStringLiteral(QUANTLENS_CLI) : o.program, args);
    CliRun r;
    if (!p.waitForStarted(10000))
        return r;
    p.waitForFinished(120000);
    r.crashed = p.exitStatus() != QProcess::NormalExit;
    r.code = r.crashed ? -1 : p.exitCode();
    r.out = p.readAllStandardOutput();
    r.err = p.readAllStandardError();
    return r;
}

}  // namespace quantlens::test

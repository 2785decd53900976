#pragma once
// Include QCustomPlot through this header. qcustomplot.h 2.1 uses Qt's `foreach` in two
// inline templates (QCustomPlot::plottableAt and itemAt), and our QT_NO_FOREACH target
// definition removes that macro; a range-for is equivalent there.
#ifndef foreach
#define foreach(variable, container) for (variable : container)
#define QUANTLENS_QCP_FOREACH_SHIM
#endif
#include <qcustomplot.h>
#ifdef QUANTLENS_QCP_FOREACH_SHIM
#undef foreach
#undef QUANTLENS_QCP_FOREACH_SHIM
#endif

#include <cstdio>
int main() { std::puts("wip"); return 0; }

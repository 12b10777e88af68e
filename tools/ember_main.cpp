#include <cstdio>
int main() { std::puts("ember: CLI not built yet"); return 0; }

// Placeholder so the module library has a source; removed once the module has code.

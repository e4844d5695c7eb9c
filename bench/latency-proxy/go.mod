module latencyproxy

go 1.21

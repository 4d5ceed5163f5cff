# Drawn by `switchboard bench --report`. Redraw: cd into this directory, then: gnuplot latency.gp
set terminal pngcairo size 1000,580 font "Sans,11" noenhanced
set output 'latency.png'
set title "Latency at 20000 msg/s offered (16 pairs, 64-byte payloads) (lower is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.85 relative
set grid ytics lc rgb '#dddddd'
set border 3
set xtics nomirror rotate by 25 right
set ytics nomirror
set xlabel 'target'
set bmargin 7
set lmargin 12
set ylabel 'one-way latency (microseconds, log scale)'
set logscale y
set format y '%g'
set ytics (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000, 1000000)
set key top left horizontal
stats 'latency.dat' using 2 nooutput
lo = STATS_min
stats 'latency.dat' using 5 nooutput
hi = STATS_max
set yrange [(lo > 0 ? lo / 2 : 0.1):hi * 4]
plot 'latency.dat' using 2:xtic(1) title 'p50' lc rgb '#4472c4', \
     '' using 3 title 'p90' lc rgb '#70ad47', \
     '' using 4 title 'p99' lc rgb '#ed7d31', \
     '' using 5 title 'p99.9' lc rgb '#c00000'

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
set xlabel 'percentile (max: the largest latency seen)'
set xtics norotate ('p50' 0, 'p90' 1, 'p99' 2, 'p99.9' 3, 'max' 4)
set xrange [-0.3:4.3]
set grid xtics ytics lc rgb '#dddddd'
set bmargin 4
set key top left
stats 'latency.dat' using 3 nooutput
set yrange [(STATS_min > 0 ? STATS_min / 1.5 : 0.1):STATS_max * 1.5]
plot 'latency.dat' index 0 using 1:3 with linespoints lw 2 pt 7 ps 1.2 title "reactor", \
     'latency.dat' index 1 using 1:3 with linespoints lw 2 pt 5 ps 1.2 title "sharded", \
     'latency.dat' index 2 using 1:3 with linespoints lw 2 pt 9 ps 1.2 title "mutex", \
     'latency.dat' index 3 using 1:3 with linespoints lw 2 pt 13 ps 1.2 title "channels", \
     'latency.dat' index 4 using 1:3 with linespoints lw 2 pt 11 ps 1.2 title "channel-per-writer", \
     'latency.dat' index 5 using 1:3 with linespoints lw 2 pt 15 ps 1.2 title "race", \
     'latency.dat' index 6 using 1:3 with linespoints lw 2 pt 4 ps 1.2 title "nats", \
     'latency.dat' index 7 using 1:3 with linespoints lw 2 pt 6 ps 1.2 title "redis", \
     'latency.dat' index 8 using 1:3 with linespoints lw 2 pt 8 ps 1.2 title "cluster"

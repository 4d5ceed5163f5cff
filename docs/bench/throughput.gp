# Drawn by `switchboard bench --report`. Redraw: cd into this directory, then: gnuplot throughput.gp
set terminal pngcairo size 1000,580 font "Sans,11" noenhanced
set output 'throughput.png'
set title "Throughput: 16 pairs, 64-byte payloads, window 256, 4 s measured (higher is better)"
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
set ylabel 'messages per second (delivered, verified)'
set format y '%.1s%c'
set key off
rate(x) = x >= 1e6 ? sprintf('%.2fM', x / 1e6) : sprintf('%.0fk', x / 1e3)
stats 'throughput.dat' using 2 nooutput
set yrange [0:(STATS_max > 0 ? STATS_max * 1.15 : 1)]
plot 'throughput.dat' using 2:xtic(1) lc rgb '#4472c4', \
     '' using 0:2:(rate($2)) with labels offset 0,0.8 notitle

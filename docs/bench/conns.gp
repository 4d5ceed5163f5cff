# Drawn by `switchboard bench --report`. Redraw: cd into this directory, then: gnuplot conns.gp
set terminal pngcairo size 1000,580 font "Sans,11" noenhanced
set output 'conns.png'
set title "Memory: server RSS growth per idle client, 5000 clients (lower is better)"
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
set ylabel 'bytes of server RSS per idle client'
set key off
stats 'conns.dat' using 2 nooutput
set yrange [(STATS_min < 0 ? STATS_min * 1.2 : 0):(STATS_max > 0 ? STATS_max * 1.15 : 1)]
plot 'conns.dat' using 2:xtic(1) lc rgb '#ed7d31', \
     '' using 0:2:(sprintf('%.0f', $2)) with labels offset 0,0.8 notitle

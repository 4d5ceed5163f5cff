# Drawn by `switchboard bench --report`. Redraw: cd into this directory, then: gnuplot stall.gp
set terminal pngcairo size 1000,900 font "Sans,11" noenhanced
set output 'stall.png'
set title "Stall: 16 healthy pairs beside one sender flooding a receiver that never reads (1.0 = unaffected)"
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
set multiplot layout 2,1
set ylabel "healthy throughput /\nthroughput without the stall"
set format y '%.1f'
set key off
stats 'stall.dat' using 2 nooutput
set yrange [0:(STATS_max > 1.1 ? STATS_max * 1.15 : 1.25)]
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead back dt 2 lc rgb '#555555'
plot 'stall.dat' using 2:xtic(1) lc rgb '#70ad47', \
     '' using 0:2:(sprintf('%.2f', $2)) with labels offset 0,0.8 notitle
unset arrow 1
set title "The flood, read after the run: held = delivered late, at the readout; lost = never delivered"
set style histogram rowstacked
set ylabel 'share of the flood sent (%)'
set format y '%.0f'
set yrange [0:135]
set ytics 0, 25, 100
unset xlabel
set key bmargin center horizontal
plot 'stall.dat' using 8:xtic(1) title 'held (delivered late)' lc rgb '#4472c4', \
     '' using 9 title 'lost' lc rgb '#c00000', \
     '' using 0:(100):(strcol(10)) with labels offset 0,2.2 font ',10' notitle, \
     '' using 0:(100):(strcol(11)) with labels offset 0,1.0 font ',10' notitle
unset multiplot
